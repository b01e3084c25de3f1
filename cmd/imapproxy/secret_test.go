package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"imapproxy/auth"
)

// commandHelperEnv, in a helper process of these tests, holds the
// arguments (space-separated) of the imapproxy command it runs.
const commandHelperEnv = "IMAPPROXY_CMD_HELPER"

// openPTY opens a pseudo-terminal and returns its master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// runCommandProcess runs the imapproxy command with args in a process
// whose stdin and stderr are a terminal, typing each of typed after the
// prompt ending in ": " that precedes it. It returns the exit code, the
// stdout, and all the terminal showed.
func runCommandProcess(t *testing.T, typed []string, args ...string) (int, string, string) {
	t.Helper()
	master, slave := openPTY(t)
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), commandHelperEnv+"="+strings.Join(args, " "))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the child has it
	// Reads of the master block until the child writes or has gone
	// (EIO): a child that never prompts is killed.
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var screen bytes.Buffer
	r := bufio.NewReader(master)
	for _, line := range typed {
		// Up to the prompt's ": ".
		for !strings.HasSuffix(screen.String(), ": ") {
			b, err := r.ReadByte()
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("waiting for a prompt: %v; the terminal showed %q", err, screen.String())
			}
			screen.WriteByte(b)
		}
		// The command prints its prompt, then turns echo off: typing in
		// between would be echoed (a person is slower than that). The
		// master reads the terminal's settings too.
		for wait := time.Now().Add(5 * time.Second); echoOn(t, master) && time.Now().Before(wait); {
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintf(master, "%s\r", line)
		screen.WriteString("|") // a typed answer, so the next prompt is a new one
	}
	err := cmd.Wait()
	// The rest of what the terminal shows (a pty master read fails once
	// the child has gone: EIO).
	rest, _ := r.ReadString(0)
	screen.WriteString(rest)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), screen.String()
}

// TestHashPasswordTerminal: at a terminal, hash-password asks for the
// password twice without echoing it; two different ones are refused.
func TestHashPasswordTerminal(t *testing.T) {
	code, out, screen := runCommandProcess(t, []string{"s3cret-typed", "s3cret-typed"}, "hash-password")
	if code != 0 {
		t.Fatalf("exit %d; terminal %q", code, screen)
	}
	if !strings.Contains(screen, "Password: ") || !strings.Contains(screen, "The same again: ") {
		t.Errorf("prompts: %q", screen)
	}
	if strings.Contains(screen, "s3cret") {
		t.Errorf("the password was echoed: %q", screen)
	}
	if ok, err := auth.CheckPassword(strings.TrimSpace(out), "s3cret-typed"); !ok || err != nil {
		t.Fatalf("hash %q does not verify: %v", out, err)
	}
	code, out, screen = runCommandProcess(t, []string{"s3cret-one", "s3cret-two"}, "hash-password")
	if code == 0 || out != "" || !strings.Contains(screen, "the two passwords differ") {
		t.Errorf("different passwords: exit %d, stdout %q, terminal %q", code, out, screen)
	}
}

// echoOn reports whether the terminal of pty master m echoes input.
func echoOn(t *testing.T, m *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(m.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}
