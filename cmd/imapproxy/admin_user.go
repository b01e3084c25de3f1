package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"imapproxy/auth"
	"imapproxy/store"
)

// userVerbs are the sub-verbs of "imapproxy user".
var userVerbs []subVerb

func init() {
	userVerbs = []subVerb{
		{"add", "add a store user; the password is read from standard input", runUserAdd},
		{"passwd", "set a store user's password, read from standard input", runUserPasswd},
		{"list", "list users with their second factors (never secrets)", runUserList},
		{"disable", "refuse a store user's logins", runUserDisable},
		{"enable", "allow a disabled store user's logins again", runUserEnable},
		{"delete", "delete a store user with their TOTP and app passwords", runUserDelete},
		{"upstream-password", "store a user's upstream password (encrypted), read from standard input", runUserUpstreamPassword},
		{"totp", "enrol or remove a user's TOTP authenticator", runUserTOTP},
	}
}

// runUser dispatches "imapproxy user <command>".
func runUser(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	return dispatch("user", userVerbs, args, stdout, stderr, stdin)
}

func runUserAdd(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "user add", "USER < password", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	name := pos[0]
	pw, err := readSecret(stdin, stderr, "password")
	if err != nil {
		return a.fail("%v", err)
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return a.fail("%v", err)
	}
	err = a.st.store.AddUser(ctx, store.User{Name: auth.Key(name), PasswordHash: hash})
	if errors.Is(err, store.ErrExists) {
		return a.fail("user %s already exists (set its password with 'imapproxy user passwd')", name)
	}
	if err != nil {
		return a.fail("add user %s: %v", name, err)
	}
	a.event(ctx, name, "user_added", "")
	fmt.Fprintf(stdout, "Added user %s.\n", auth.Key(name))
	if u, ok := a.configUser(name); ok {
		fmt.Fprintf(stderr, "Note: the config file also has a [[user]] %s, which takes precedence over the store.\n", u.Name)
	}
	return 0
}

func runUserPasswd(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "user passwd", "USER < password", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	name := pos[0]
	if _, ok, err := a.storeUser(ctx, name); err != nil {
		return a.fail("%v", err)
	} else if !ok {
		return a.fail("no user %s in the store%s", name, a.configHint(name))
	}
	pw, err := readSecret(stdin, stderr, "password")
	if err != nil {
		return a.fail("%v", err)
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return a.fail("%v", err)
	}
	if err := a.st.store.SetPasswordHash(ctx, auth.Key(name), hash); err != nil {
		return a.fail("set the password of %s: %v", name, err)
	}
	a.event(ctx, name, "user_password_changed", "")
	fmt.Fprintf(stdout, "Changed the password of %s.\n", auth.Key(name))
	return 0
}

// configHint explains a store miss for a user of the config file.
func (a *admin) configHint(name string) string {
	if _, ok := a.configUser(name); ok {
		return " (it is a [[user]] of the config file: change it there)"
	}
	return ""
}

func runUserList(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	a, _, code := startAdmin(ctx, "user list", "", args, stderr, nil)
	if a == nil {
		return code
	}
	defer a.close()
	users, err := a.st.store.ListUsers(ctx)
	if err != nil {
		return a.fail("list users: %v", err)
	}
	type row struct {
		name, source string
		u            store.User
	}
	var rows []row
	inStore := make(map[string]int)
	for _, u := range users {
		inStore[u.Name] = len(rows)
		src := "store"
		if u.PasswordHash == "" {
			src = "store(no-password)"
		}
		rows = append(rows, row{name: u.Name, source: src, u: u})
	}
	for _, cu := range a.cfg.Users {
		k := auth.Key(cu.Name)
		if i, ok := inStore[k]; ok {
			rows[i].source = "config+" + rows[i].source
			continue
		}
		inStore[k] = len(rows)
		rows = append(rows, row{name: k, source: "config"})
	}
	// Users the upstream verifies have no row, but may have a TOTP
	// enrolment or app passwords.
	others, err := a.st.store.CredentialUsers(ctx)
	if err != nil {
		return a.fail("list users: %v", err)
	}
	for _, name := range others {
		if _, ok := inStore[name]; !ok {
			inStore[name] = len(rows)
			rows = append(rows, row{name: name, source: "upstream"})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	if len(rows) == 0 {
		fmt.Fprintln(stderr, "no users (add one with 'imapproxy user add')")
		return 0
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSOURCE\tDISABLED\tTOTP\tUPSTREAM-PW\tAPP-PWS\tCREATED")
	for _, r := range rows {
		totp := "no"
		t, err := a.st.store.GetTOTP(ctx, r.name)
		switch {
		case err == nil && t.Confirmed:
			totp = "yes"
		case err == nil:
			totp = "unconfirmed"
		case !errors.Is(err, store.ErrNotFound):
			return a.fail("read the TOTP enrolment of %s: %v", r.name, err)
		}
		aps, err := a.st.store.ListAppPasswords(ctx, r.name)
		if err != nil {
			return a.fail("list the app passwords of %s: %v", r.name, err)
		}
		live := 0
		for _, ap := range aps {
			if ap.Revoked.IsZero() && (ap.Expires.IsZero() || now.Before(ap.Expires)) {
				live++
			}
		}
		disabled, upstream := "no", "no"
		if r.u.Disabled {
			disabled = "yes"
		}
		if len(r.u.SealedUpstreamPassword) > 0 {
			upstream = "stored"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", show(r.name), r.source, disabled, totp, upstream, live, showTime(r.u.Created))
	}
	if err := tw.Flush(); err != nil {
		return a.fail("%v", err)
	}
	return 0
}

func runUserDisable(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	return setDisabled("user disable", true, args, stdout, stderr)
}

func runUserEnable(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	return setDisabled("user enable", false, args, stdout, stderr)
}

// setDisabled is "user disable" and "user enable".
func setDisabled(name string, disabled bool, args []string, stdout, stderr io.Writer) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, name, "USER", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	user := pos[0]
	err := a.st.store.SetDisabled(ctx, auth.Key(user), disabled)
	if errors.Is(err, store.ErrNotFound) {
		return a.fail("no user %s in the store%s", user, a.configHint(user))
	}
	if err != nil {
		return a.fail("%v", err)
	}
	kind, done := "user_enabled", "Enabled"
	if disabled {
		kind, done = "user_disabled", "Disabled"
	}
	a.event(ctx, user, kind, "")
	fmt.Fprintf(stdout, "%s user %s.\n", done, auth.Key(user))
	if u, ok := a.configUser(user); ok {
		fmt.Fprintf(stderr, "Note: the config file's [[user]] %s takes precedence over the store: this has no effect on its logins.\n", u.Name)
	} else if disabled {
		fmt.Fprintln(stderr, "New logins are refused; sessions already open go on until they end.")
	}
	return 0
}

func runUserDelete(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	ctx := context.Background()
	a, pos, code := startAdmin(ctx, "user delete", "USER", args, stderr, nil, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	user := pos[0]
	err := a.st.store.DeleteUser(ctx, auth.Key(user))
	if errors.Is(err, store.ErrNotFound) {
		return a.fail("no user %s in the store%s", user, a.configHint(user))
	}
	if err != nil {
		return a.fail("%v", err)
	}
	a.event(ctx, user, "user_deleted", "")
	fmt.Fprintf(stdout, "Deleted user %s, with their TOTP enrolment and app passwords.\n", auth.Key(user))
	return 0
}

func runUserUpstreamPassword(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	ctx := context.Background()
	var clear *bool
	a, pos, code := startAdmin(ctx, "user upstream-password", "[-clear] USER < password", args, stderr, func(fs *flag.FlagSet) {
		clear = fs.Bool("clear", false, "remove the stored upstream password instead")
	}, "USER")
	if a == nil {
		return code
	}
	defer a.close()
	user, key := pos[0], auth.Key(pos[0])
	if *clear {
		err := a.st.store.SetSealedUpstreamPassword(ctx, key, nil)
		if errors.Is(err, store.ErrNotFound) {
			return a.fail("no upstream password is stored for %s", user)
		}
		if err != nil {
			return a.fail("%v", err)
		}
		a.event(ctx, user, "upstream_password_cleared", "")
		fmt.Fprintf(stdout, "Removed the stored upstream password of %s.\n", key)
		return 0
	}
	if err := a.st.needSealer(); err != nil {
		return a.fail("%v", err)
	}
	pw, err := readSecret(stdin, stderr, "upstream password")
	if err != nil {
		return a.fail("%v", err)
	}
	sealed, err := a.st.sealer.Seal([]byte(pw), auth.UpstreamPasswordPurpose(user))
	if err != nil {
		return a.fail("%v", err)
	}
	// A user the proxy holds no password for (a config [[user]], a login
	// the upstream verifies) gets a store row without one.
	err = a.st.store.SetSealedUpstreamPassword(ctx, key, sealed)
	if errors.Is(err, store.ErrNotFound) {
		err = a.st.store.AddUser(ctx, store.User{Name: key, SealedUpstreamPassword: sealed})
		if errors.Is(err, store.ErrExists) { // added meanwhile
			err = a.st.store.SetSealedUpstreamPassword(ctx, key, sealed)
		}
	}
	if err != nil {
		return a.fail("store the upstream password of %s: %v", user, err)
	}
	a.event(ctx, user, "upstream_password_stored", "")
	fmt.Fprintf(stdout, "Stored the upstream password of %s (encrypted).\n", key)
	fmt.Fprintln(stderr, `It is used where the user's [[user]] or [[route]] has upstream_password = "store" (password = "store" for a route), `+
		`and for logins with an app password, which give no password of the user's own to pass through.`)
	return 0
}
