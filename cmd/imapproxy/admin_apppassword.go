package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"imapproxy/auth"
	"imapproxy/store"
)

// appPasswordVerbs are the sub-verbs of "imapproxy app-password".
var appPasswordVerbs []subVerb

func init() {
	appPasswordVerbs = []subVerb{
		{"add", "make a new app password for a user (shown once)", runAppPasswordAdd},
		{"list", "list a user's app passwords (never the passwords)", runAppPasswordList},
		{"revoke", "revoke a user's app password; its sessions end", runAppPasswordRevoke},
	}
}

// runAppPassword dispatches "imapproxy app-password <command>".
func runAppPassword(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	return dispatch("app-password", appPasswordVerbs, args, stdout, stderr, stdin)
}

// parseLifetime reads a duration such as "90d", "12h", "30m" or "1d12h":
// time.ParseDuration's units plus d for 24 hours. It must be positive.
func parseLifetime(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: want a positive number of days, hours or minutes, as in 90d, 12h or 30m", s)
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 32)
		if err != nil || n > 100*366 {
			return 0, bad
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, bad
		}
		rest = d
	}
	if days+rest <= 0 {
		return 0, bad
	}
	return days + rest, nil
}

// checkAppPasswordName wants a short name without control characters.
func checkAppPasswordName(name string) error {
	if name == "" {
		return errors.New("-name is required (what the password is for, as in -name phone)")
	}
	if len(name) > 64 {
		return errors.New("-name is longer than 64 bytes")
	}
	for _, r := range name {
		if !unicode.IsGraphic(r) {
			return fmt.Errorf("-name %s has control characters", strconv.Quote(name))
		}
	}
	return nil
}

func runAppPasswordAdd(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	var name, account, expires *string
	var readOnly *bool
	a, pos, code := startAdmin(ctx, "app-password add", "-name NAME [-read-only] [-account NAME] [-expires 90d] USER", args, stderr, func(fs *flag.FlagSet) {
		name = fs.String("name", "", "what the password is for, as in phone (required; unique among the user's live app passwords)")
		readOnly = fs.Bool("read-only", false, "allow only reading mail")
		account = fs.String("account", "", "restrict it to this account (default: all)")
		expires = fs.String("expires", "", "lifetime, as in 90d, 12h or 30m (default: never expires)")
	}, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	user, key := pos[0], auth.Key(pos[0])
	if err := checkAppPasswordName(*name); err != nil {
		return a.fail("%v", err)
	}
	now := time.Now()
	var until time.Time
	if *expires != "" && *expires != "never" {
		d, err := parseLifetime(*expires)
		if err != nil {
			return a.fail("-expires: %v", err)
		}
		until = now.Add(d)
	}
	pw, err := auth.GenerateAppPassword()
	if err != nil {
		return a.fail("%v", err)
	}
	_, err = a.st.store.AddAppPassword(ctx, store.AppPassword{
		User: key, Name: *name, Hash: auth.HashAppPassword(pw),
		ReadOnly: *readOnly, Account: *account, Created: now, Expires: until,
	})
	if errors.Is(err, store.ErrExists) {
		return a.fail("%s already has an app password named %q: revoke it first or choose another name", key, *name)
	}
	if err != nil {
		return a.fail("store the app password: %v", err)
	}
	a.event(ctx, user, "app_password_added", *name)
	if _, known, _ := a.storeUser(ctx, user); !known {
		if _, ok := a.configUser(user); !ok {
			fmt.Fprintf(stderr, "Note: %s is neither a store user nor a [[user]]: the app password works only if a [[route]] lets the upstream verify %s.\n", key, key)
		}
	}
	fmt.Fprintf(stderr, "App password %q for %s (%s, expires %s). It is shown only this once; dashes and case do not matter:\n",
		*name, key, scope(*readOnly, *account), showExpiry(until, now))
	fmt.Fprintln(stdout, pw)
	return 0
}

// scope describes what an app password may do.
func scope(readOnly bool, account string) string {
	s := "all"
	if readOnly {
		s = "read-only"
	}
	if account != "" {
		s += ", account " + show(account)
	}
	return s
}

// showExpiry prints an expiry time, "never" for none.
func showExpiry(t, now time.Time) string {
	switch {
	case t.IsZero():
		return "never"
	case !now.Before(t):
		return showTime(t) + " (expired)"
	}
	return showTime(t)
}

func runAppPasswordList(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "app-password list", "USER", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	key := auth.Key(pos[0])
	aps, err := a.st.store.ListAppPasswords(ctx, key)
	if err != nil {
		return a.fail("%v", err)
	}
	if len(aps) == 0 {
		fmt.Fprintf(stderr, "%s has no app passwords\n", show(key))
		return 0
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tLAST-USED\tLAST-IP\tEXPIRES\tREVOKED")
	for _, ap := range aps {
		ip := "-"
		if ap.LastIP.IsValid() {
			ip = ap.LastIP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", show(ap.Name), scope(ap.ReadOnly, ap.Account),
			showTime(ap.Created), showTime(ap.LastUsed), ip, showExpiry(ap.Expires, now), showTime(ap.Revoked))
	}
	if err := tw.Flush(); err != nil {
		return a.fail("%v", err)
	}
	return 0
}

func runAppPasswordRevoke(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "app-password revoke", "USER NAME", args, stderr, nil, "USER", "NAME")
	if a == nil {
		return code
	}
	defer a.close()
	user, key, name := pos[0], auth.Key(pos[0]), pos[1]
	err := a.st.store.RevokeAppPassword(ctx, key, name, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return a.fail("%s has no live app password named %q (see 'imapproxy app-password list %s')", key, name, key)
	}
	if err != nil {
		return a.fail("%v", err)
	}
	a.event(ctx, user, "app_password_revoked", name)
	fmt.Fprintf(stdout, "Revoked the app password %q of %s. Sessions using it end within a few seconds.\n", name, key)
	return 0
}
