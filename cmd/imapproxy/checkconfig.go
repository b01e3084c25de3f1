package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"imapproxy/config"
	"imapproxy/plugins"
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
	if err := checkPluginFiles(cfg.Plugins); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n%s", *path, cfg.Summary())
	return 0
}

// checkPluginFiles checks that each plugin's executable exists and
// matches its sha256, which serve would otherwise find at boot.
func checkPluginFiles(ps []config.Plugin) error {
	var errs []error
	for i, p := range ps {
		sum, err := plugins.SHA256(p.Command)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("plugin[%d] %q: %w", i, p.Name, err))
		case sum != strings.ToLower(p.SHA256):
			errs = append(errs, fmt.Errorf("plugin[%d] %q: %s has sha256 %s, not the configured %s: serve would not start it",
				i, p.Name, p.Command, sum, p.SHA256))
		}
	}
	return errors.Join(errs...)
}
