//go:build !linux

package plugins

import "os/exec"

// dieWithProxy does nothing here: only Linux has a parent-death signal.
func dieWithProxy(*exec.Cmd) {}
