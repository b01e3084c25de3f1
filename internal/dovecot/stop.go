package dovecot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Stop sends SIGTERM to every process of the instance (its process group)
// and waits until all are gone, killing stragglers after a grace period.
// Signalling only the master would leave its children lingering for 10 to
// 30 seconds (mail processes, login processes with clients). Stop is safe
// to call more than once; later calls return the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	defer s.removeOwnBaseDir()
	pgid := s.cmd.Process.Pid // Setpgid made the master the group leader
	var errs []error

	select {
	case <-s.exited:
	default:
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			errs = append(errs, fmt.Errorf("dovecot master %d ignored SIGTERM for 15s; killed", pgid))
			s.cmd.Process.Kill()
			<-s.exited
		}
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		left := groupMembers(pgid)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			errs = append(errs, fmt.Errorf("dovecot processes %v outlived the master by 10s; killed", left))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%v", errs)
}

func (s *Server) removeOwnBaseDir() {
	if s.ownBaseDir {
		os.RemoveAll(s.BaseDir)
	}
}

// groupMembers lists the live (not zombie) processes of process group pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain anything, so
		// parse from the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(stat[i+1:])
		if len(fields) < 3 || string(fields[0]) == "Z" {
			continue
		}
		if g, err := strconv.Atoi(string(fields[2])); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}
