package main

import (
	"fmt"
	"io"

	"imapproxy/auth"
)

func runHashPassword(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	fs := newFlagSet("hash-password", "< password", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	pw, err := readSecret(stdin, stderr, "password")
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy hash-password: %v\n", err)
		return 1
	}
	h, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}
