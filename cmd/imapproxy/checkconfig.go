package main

import (
	"fmt"
	"io"

	"imapproxy/config"
)

func runCheckConfig(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("check-config", "-config FILE", stderr)
	path := fs.String("config", "/etc/imapproxy/config.toml", "config file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n%s", *path, cfg.Summary())
	return 0
}
