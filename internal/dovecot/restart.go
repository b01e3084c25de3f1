package dovecot

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Kill ends every process of the instance at once with SIGKILL, as a
// crash of the server or its machine would: connections are cut without
// a BYE and nothing is flushed. It returns once all are gone. Restart
// starts the instance again; Stop after Kill does nothing more.
func (s *Server) Kill() error {
	pgid := s.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("dovecot master %d still running 10s after SIGKILL", pgid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(groupMembers(pgid)) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecot processes %v outlived SIGKILL by 10s", groupMembers(pgid))
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Restart starts a killed or stopped instance again from the same
// directory, configuration, certificate and ports, with its mail as it
// was left, and returns once both listeners greet. It fails while the
// instance still runs. It is not safe to call concurrently with other
// methods of s.
func (s *Server) Restart() error {
	select {
	case <-s.exited:
	default:
		return errors.New("dovecot: Restart of a running instance (Kill or Stop it first)")
	}
	// Wait for Stop, if one runs, before the instance is replaced under it.
	s.stopOnce.Do(func() {})
	dovecotBin, err := binary("dovecot")
	if err != nil {
		return err
	}
	if s.ownBaseDir {
		// Stop removed it; the sockets' directory is made again.
		if err := os.MkdirAll(s.BaseDir, 0o755); err != nil {
			return err
		}
	}
	stderrFile, err := os.OpenFile(filepath.Join(s.Dir, "dovecot.stderr"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer stderrFile.Close()
	s.stopOnce, s.stopErr = sync.Once{}, nil
	s.exited, s.waitErr = make(chan struct{}), nil
	s.cmd = exec.Command(dovecotBin, "-F", "-c", s.ConfigFile)
	s.cmd.Dir = s.Dir
	s.cmd.Stdout = stderrFile
	s.cmd.Stderr = stderrFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := s.run(); err != nil {
		return fmt.Errorf("restart %s: %w", dovecotBin, err)
	}
	// A port the instance had may be held for a moment by a client's
	// socket; Dovecot's listeners set SO_REUSEADDR, so a retry is enough
	// only when another process took it, which then fails here.
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		return fmt.Errorf("restart: %w\ndovecot log tail:\n%s", err, s.LogTail(30))
	}
	return nil
}
