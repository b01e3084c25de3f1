package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"

	"imapproxy/auth"
	"imapproxy/store"
)

// totpTries is how many codes enrol accepts before giving up.
const totpTries = 3

// totpStepKeep is how long a used TOTP step is remembered; the login flow
// keeps steps as long (auth.Authenticator).
const totpStepKeep = 3 * time.Minute

// totpVerbs are the sub-verbs of "imapproxy user totp".
var totpVerbs []subVerb

func init() {
	totpVerbs = []subVerb{
		{"enroll", "enrol a TOTP authenticator app (shows a QR code, asks for a first code)", runTOTPEnroll},
		{"remove", "remove a user's TOTP enrolment", runTOTPRemove},
	}
}

// runUserTOTP dispatches "imapproxy user totp <command>".
func runUserTOTP(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	return dispatch("user totp", totpVerbs, args, stdout, stderr, stdin)
}

// runTOTPEnroll makes a new TOTP secret for a user, stores it sealed and
// unconfirmed, shows it, and confirms it once the user enters a right code.
func runTOTPEnroll(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	ctx := context.Background()
	var noQR, replace *bool
	a, pos, code := startAdmin(ctx, "user totp enroll", "[-no-qr] [-replace] USER", args, stderr, func(fs *flag.FlagSet) {
		noQR = fs.Bool("no-qr", false, "do not print the QR code (only the URI and the secret)")
		replace = fs.Bool("replace", false, "replace a confirmed enrolment (kept if the new one is not confirmed)")
	}, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	if err := a.st.needSealer(); err != nil {
		return a.fail("%v", err)
	}
	user, key := pos[0], auth.Key(pos[0])
	old, err := a.st.store.GetTOTP(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = store.TOTP{}
	case err != nil:
		return a.fail("read the TOTP enrolment of %s: %v", user, err)
	case old.Confirmed && !*replace:
		return a.fail("%s already has a confirmed TOTP enrolment: pass -replace to replace it, or remove it first with 'imapproxy user totp remove'", key)
	}
	secret, uri, err := auth.NewTOTPSecret(a.cfg.Auth.TOTPIssuer, user)
	if err != nil {
		return a.fail("%v", err)
	}
	sealed, err := a.st.sealer.Seal([]byte(secret), auth.TOTPPurpose(user))
	if err != nil {
		return a.fail("%v", err)
	}
	if err := a.st.store.PutTOTP(ctx, store.TOTP{User: key, SealedSecret: sealed}); err != nil {
		return a.fail("store the TOTP enrolment of %s: %v", user, err)
	}
	// restore puts back a confirmed enrolment that -replace was to replace.
	restore := func() string {
		if !old.Confirmed {
			return fmt.Sprintf("the new enrolment of %s is left unconfirmed (not used for logins); run enroll again", key)
		}
		if err := a.st.store.PutTOTP(ctx, old); err != nil {
			return fmt.Sprintf("the previous enrolment of %s could not be restored (%v): %s has no working TOTP now", key, err, key)
		}
		return fmt.Sprintf("the previous enrolment of %s is kept", key)
	}

	if !*noQR {
		fmt.Fprintf(stdout, "Scan this QR code with the authenticator app of %s:\n\n", key)
		qrterminal.GenerateWithConfig(uri, qrterminal.Config{
			Level: qrterminal.M, Writer: stdout, HalfBlocks: true, QuietZone: 2,
			BlackChar: qrterminal.BLACK_BLACK, BlackWhiteChar: qrterminal.BLACK_WHITE,
			WhiteChar: qrterminal.WHITE_WHITE, WhiteBlackChar: qrterminal.WHITE_BLACK,
		})
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "Or enter this secret by hand (time-based, SHA-1, 6 digits, 30 seconds):\n  %s\n", secret)
	fmt.Fprintf(stdout, "URI: %s\n\n", uri)

	in := bufio.NewReader(stdin)
	for try := 1; try <= totpTries; try++ {
		fmt.Fprint(stdout, "Enter the 6-digit code from your app: ")
		line, err := in.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			fmt.Fprintln(stdout)
			return a.fail("no code entered: %s", restore())
		}
		code := strings.Map(func(r rune) rune {
			if r == ' ' || r == '-' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, line)
		step, ok := auth.MatchTOTP(secret, code, time.Now())
		if !ok {
			if try < totpTries {
				fmt.Fprintf(stderr, "Wrong code; %d tries left. (Check that the clocks of the phone and the server are right.)\n", totpTries-try)
			}
			continue
		}
		// The code used here must not also serve for a login. A step
		// already used (by a login with a former secret) cannot be used
		// again either, so the answer does not matter.
		if _, err := a.st.store.UseTOTPStep(ctx, key, step, totpStepKeep); err != nil {
			return a.fail("record the code: %v: %s", err, restore())
		}
		if err := a.st.store.ConfirmTOTP(ctx, key); err != nil {
			return a.fail("confirm the enrolment: %v", err)
		}
		a.event(ctx, user, "totp_enrolled", "")
		fmt.Fprintf(stdout, "TOTP is enrolled for %s. Log in with the password followed by the current code, as in secret123456 or secret:123456.\n", key)
		return 0
	}
	return a.fail("wrong code %d times: %s", totpTries, restore())
}

// runTOTPRemove deletes a user's TOTP enrolment.
func runTOTPRemove(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "user totp remove", "USER", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	user, key := pos[0], auth.Key(pos[0])
	err := a.st.store.DeleteTOTP(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return a.fail("%s has no TOTP enrolment", key)
	}
	if err != nil {
		return a.fail("%v", err)
	}
	a.event(ctx, user, "totp_removed", "")
	fmt.Fprintf(stdout, "Removed the TOTP enrolment of %s.\n", key)
	return 0
}
