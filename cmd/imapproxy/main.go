// Command imapproxy is an IMAP front end: it terminates TLS, authenticates
// users (with second factors) and routes each session to an upstream IMAP
// server.
//
// Usage:
//
//	imapproxy serve -config FILE      run the proxy
//	imapproxy check-config -config FILE
//	imapproxy hash-password           read a password on stdin, print its argon2id hash
//	imapproxy demo                    run a self-contained demo
//	imapproxy version
//	imapproxy keygen                  make a server key for [secrets]
//	imapproxy user ...                store users, TOTP enrolment, stored upstream passwords
//	imapproxy app-password ...        add, list and revoke app passwords
//	imapproxy audit [USER]            recent logins, failures and changes
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type verb struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer, stdin io.Reader) int
}

var verbs []verb

func init() {
	verbs = []verb{
		{"serve", "run the proxy", runServe},
		{"check-config", "validate a config file and print a summary", runCheckConfig},
		{"hash-password", "read a password on stdin and print its argon2id hash", runHashPassword},
		{"demo", "serve a demo account over built-in upstream servers", runDemo},
		{"keygen", "print a new server key for [secrets] key", runKeygen},
		{"user", "manage store users, their passwords and TOTP", runUser},
		{"app-password", "add, list and revoke app passwords", runAppPassword},
		{"audit", "show the last audit events", runAudit},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Stdin))
}

func run(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, v := range verbs {
		if v.name == args[0] {
			return v.run(args[1:], stdout, stderr, stdin)
		}
	}
	fmt.Fprintf(stderr, "imapproxy: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: imapproxy <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-14s %s\n", v.name, v.summary)
	}
	fmt.Fprintln(w, "\nRun 'imapproxy <command> -h' for a command's flags.")
}

// newFlagSet makes a flag set for a verb that prints its usage to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: imapproxy %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns an exit code and false when the verb
// should stop (-h or an error).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "imapproxy %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
}

func runVersion(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("version", "", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintf(stdout, "imapproxy %s\n", v)
	return 0
}
