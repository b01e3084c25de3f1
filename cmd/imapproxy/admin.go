package main

// Admin verbs: keygen, user, app-password and audit. They work on the same
// state directory as a running server (the store handles several
// processes) and take the same -config file.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/term"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/store"
)

// defaultConfigPath is the -config default of every verb.
const defaultConfigPath = "/etc/imapproxy/config.toml"

// subVerb is one sub-command of a verb such as "user".
type subVerb struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer, stdin io.Reader) int
}

// dispatch runs the sub-verb of verb named by args[0]. With no sub-verb it
// prints the list and returns 2; with -h, the list and 0.
func dispatch(verb string, subs []subVerb, args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stderr, "Usage: imapproxy %s <command> [flags]\n\nCommands:\n", verb)
		for _, s := range subs {
			fmt.Fprintf(stderr, "  %-18s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(stderr, "\nRun 'imapproxy %s <command> -h' for a command's flags.\n", verb)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr, stdin)
		}
	}
	fmt.Fprintf(stderr, "imapproxy %s: unknown command %q (run 'imapproxy %s -h')\n", verb, args[0], verb)
	return 2
}

// parseArgs parses args, in which flags and positional arguments may be
// interleaved ("user add alice -config F" as well as "user add -config F
// alice"); everything after "--" is positional. The positional arguments
// must match names (as in "USER", used in errors), of which those written
// in brackets ("[USER]") are optional. It returns an exit code and false
// when the verb should stop.
func parseArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, 0, false
			}
			return nil, 2, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	required := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "[") {
			required++
		}
	}
	switch {
	case len(pos) < required:
		fmt.Fprintf(fs.Output(), "imapproxy %s: missing %s\n", fs.Name(), names[len(pos)])
	case len(pos) > len(names):
		fmt.Fprintf(fs.Output(), "imapproxy %s: unexpected argument %q\n", fs.Name(), pos[len(names)])
	default:
		return pos, 0, true
	}
	fs.Usage()
	return nil, 2, false
}

// admin is an open configuration and state for one admin command.
type admin struct {
	name   string // "user add", for messages
	cfg    *config.Config
	st     *state
	stderr io.Writer
}

// openAdmin loads the config at path and opens its state. On error it
// prints the reason and returns nil; the verb then exits 1.
func openAdmin(ctx context.Context, name, path string, stderr io.Writer) *admin {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy %s: %v\n", name, err)
		return nil
	}
	st, err := openState(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy %s: state_dir %s: %v\n", name, cfg.StateDir, err)
		return nil
	}
	return &admin{name: name, cfg: cfg, st: st, stderr: stderr}
}

func (a *admin) close() { a.st.close() }

// fail prints an error of the command and returns exit code 1.
func (a *admin) fail(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "imapproxy %s: %s\n", a.name, fmt.Sprintf(format, args...))
	return 1
}

// event records an audit event of an admin action. A failure to record it
// is reported but does not undo the action.
func (a *admin) event(ctx context.Context, user, kind, detail string) {
	err := a.st.store.AddEvent(ctx, store.Event{User: auth.Key(user), Kind: kind, Detail: detail})
	if err != nil {
		fmt.Fprintf(a.stderr, "imapproxy %s: warning: audit event not recorded: %v\n", a.name, err)
	}
}

// configUser returns the config [[user]] that name matches, if any.
func (a *admin) configUser(name string) (config.User, bool) {
	for _, u := range a.cfg.Users {
		if auth.Key(u.Name) == auth.Key(name) {
			return u, true
		}
	}
	return config.User{}, false
}

// storeUser returns the store's user name, or ok false when there is none.
func (a *admin) storeUser(ctx context.Context, name string) (store.User, bool, error) {
	u, err := a.st.store.GetUser(ctx, auth.Key(name))
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, nil
	}
	return u, err == nil, err
}

// checkUserName refuses names no client could log in with.
func checkUserName(name string) error {
	switch {
	case name == "":
		return errors.New("the user name is empty")
	case len(name) > 255:
		return errors.New("the user name is longer than 255 bytes")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsGraphic(r) {
			return fmt.Errorf("the user name %s has spaces or control characters", strconv.Quote(name))
		}
	}
	return nil
}

// readSecret reads a secret for an admin verb: typed at a terminal, it
// is asked for on stderr, twice, without echo; otherwise (a script) it is
// the first line of stdin (readSecretLine).
func readSecret(stdin io.Reader, stderr io.Writer, what string) (string, error) {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return readSecretLine(bufio.NewReader(stdin), what)
	}
	fd := int(f.Fd())
	ask := func(prompt string) (string, error) {
		fmt.Fprint(stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", what, err)
		}
		return string(b), nil
	}
	first, err := ask(capitalize(what) + ": ")
	if err != nil {
		return "", err
	}
	switch {
	case first == "":
		return "", fmt.Errorf("no %s typed", what)
	case len(first) > auth.MaxPasswordLength:
		return "", fmt.Errorf("the %s is longer than %d bytes", what, auth.MaxPasswordLength)
	}
	again, err := ask("The same again: ")
	if err != nil {
		return "", err
	}
	if again != first {
		return "", fmt.Errorf("the two %ss differ", what)
	}
	return first, nil
}

// capitalize upper-cases the first letter of an ASCII word.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// readSecretLine reads one line from r without its line ending; what the
// line is called ("password") names it in errors. An empty line is refused.
func readSecretLine(r *bufio.Reader, what string) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no %s on standard input (give it as one line)", what)
	}
	if len(line) > auth.MaxPasswordLength {
		return "", fmt.Errorf("the %s is longer than %d bytes", what, auth.MaxPasswordLength)
	}
	return line, nil
}

// show makes s safe to print on a terminal: "-" when empty, quoted when it
// has control characters (names from clients end up in the audit).
func show(s string) string {
	if s == "" {
		return "-"
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) || r == '\t' {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}

// showTime prints t in local time, RFC 3339, or "-" for the zero time.
func showTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

// runKeygen prints a new server key.
func runKeygen(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("keygen", "[-out FILE]", stderr)
	out := fs.String("out", "", "write the key to this new file (mode 0600) instead of standard output")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	key, err := auth.GenerateKey()
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy keygen: %v\n", err)
		return 1
	}
	if *out == "" {
		fmt.Fprintln(stdout, key)
		fmt.Fprintln(stderr, `Save this key to a file only the proxy's user can read (chmod 600), back it up,
and set in the config:  [secrets] key = "file:PATH"
(or keep it in an environment variable and set key = "env:NAME").
Without it, stored TOTP secrets and upstream passwords cannot be decrypted.`)
		return 0
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy keygen: %v (an existing key file is never overwritten)\n", err)
		return 1
	}
	_, err = fmt.Fprintln(f, key)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		fmt.Fprintf(stderr, "imapproxy keygen: %v\n", err)
		return 1
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		abs = *out
	}
	fmt.Fprintf(stderr, "Wrote a new key to %s (mode 0600). Back it up, and set in the config:\n  [secrets] key = \"file:%s\"\n", *out, abs)
	return 0
}

// startAdmin is the common start of an admin sub-verb: it parses args (with
// -config, the flags that addFlags defines, and the positional arguments
// names) and opens the state. When it returns a nil admin, the verb exits
// with code.
func startAdmin(ctx context.Context, name, synopsis string, args []string, stderr io.Writer,
	addFlags func(*flag.FlagSet), names ...string) (a *admin, pos []string, code int) {
	fs := newFlagSet(name, "[-config FILE] "+synopsis, stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	if addFlags != nil {
		addFlags(fs)
	}
	pos, code, ok := parseArgs(fs, args, names...)
	if !ok {
		return nil, nil, code
	}
	for i, n := range names {
		if i < len(pos) && n == "USER" {
			if err := checkUserName(pos[i]); err != nil {
				fmt.Fprintf(stderr, "imapproxy %s: %v\n", name, err)
				return nil, nil, 2
			}
		}
	}
	if a = openAdmin(ctx, name, *path, stderr); a == nil {
		return nil, nil, 1
	}
	return a, pos, 0
}
