package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"imapproxy/auth"
)

func runHashPassword(args []string, stdout, stderr io.Writer, stdin io.Reader) int {
	fs := newFlagSet("hash-password", "< password", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "imapproxy hash-password: read password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "imapproxy hash-password: no password on standard input")
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
