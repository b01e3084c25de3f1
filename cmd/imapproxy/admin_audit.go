package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"imapproxy/auth"
)

// runAudit prints the last audit events, newest first, one per line: time,
// user, kind, method, remote address and detail ("-" for an empty field).
func runAudit(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("audit", "[-config FILE] [-n N] [USER]", stderr)
	path := fs.String("config", defaultConfigPath, "config file")
	n := fs.Int("n", 20, "how many events to show, newest first (0: all)")
	pos, code, ok := parseArgs(fs, args, "[USER]")
	if !ok {
		return code
	}
	user := ""
	if len(pos) == 1 {
		user = auth.Key(pos[0])
	}
	ctx := context.Background()
	a := openAdmin(ctx, "audit", *path, stderr)
	if a == nil {
		return 1
	}
	defer a.close()
	events, err := a.st.store.Events(ctx, user, *n)
	if err != nil {
		return a.fail("read events: %v", err)
	}
	if len(events) == 0 {
		if user != "" {
			fmt.Fprintf(stderr, "no events for %s\n", show(user))
		} else {
			fmt.Fprintln(stderr, "no events")
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tUSER\tKIND\tMETHOD\tREMOTE\tDETAIL")
	for _, e := range events {
		remote := "-"
		if e.Remote.IsValid() {
			remote = e.Remote.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", showTime(e.Time), show(e.User), show(e.Kind),
			show(e.Method), remote, show(e.Detail))
	}
	if err := tw.Flush(); err != nil {
		return a.fail("%v", err)
	}
	return 0
}
