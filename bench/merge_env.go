package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"imapproxy/internal/dovecot"
	"imapproxy/internal/sample"
)

// The merge-mode benchmarks use their own Dovecot user, present on both
// instances, so that the route-mode figures (alice's 200-message INBOX)
// stay as they were. The proxy's merge user has two accounts, both erin:
// "work" on the first Dovecot and "home" on the second.
const (
	userMergeUp   = "erin"   // the Dovecot user of both accounts
	passMergeUp   = "erinpw" // and its password, passed through
	userMerged    = "merged" // the proxy's merge-mode user
	mergeWorkPre  = "Work"   // prefix of the account on the first Dovecot
	mergeHomePre  = "Home"   // prefix of the account on the second Dovecot
	mergeBulkBox  = "Bulk"   // the bulk mailbox in the work account
	mergeBulkKB   = 100      // size of each bulk message
	mergeSmallLen = 2048     // size of each INBOX message
)

// mergeNames are the merge-mode benchmarks.
var mergeNames = []string{"mergeselect", "mergebulk", "mergerss", "mergemove"}

// mergeEnabled reports whether any merge-mode benchmark was selected.
func (o *options) mergeEnabled() bool {
	for _, n := range mergeNames {
		if o.enabled(n) {
			return true
		}
	}
	return false
}

// mergeSides returns the proxied merged account and the two accounts
// reached directly, TLS on every hop.
func (e *env) mergeSides() (proxy, work, home side) {
	return side{"proxy", e.proxyTLS, e.clientTLS, userMerged, passMergeUp},
		side{"direct work", e.directTLS, e.clientTLS, userMergeUp, passMergeUp},
		side{"direct home", e.dov2.TLSAddr, e.clientTLS, userMergeUp, passMergeUp}
}

// startSecondDovecot starts the Dovecot instance of the merge user's
// second account, with the same users as the first.
func (e *env) startSecondDovecot(users map[string]string) error {
	start := time.Now()
	d, err := dovecot.Start(filepath.Join(e.dir, "dovecot2"), dovecot.Options{Users: users})
	if err != nil {
		return fmt.Errorf("start second dovecot: %w", err)
	}
	e.mu.Lock()
	e.dov2 = d
	e.mu.Unlock()
	logf("second dovecot up in %v (tls %s)", time.Since(start).Round(time.Millisecond), d.TLSAddr)
	return nil
}

// fillMerge delivers o.mergeMsgs messages of about 2 KB to erin's INBOX on
// each Dovecot and, for mergebulk, o.mergeBulkMB megabytes to the work
// account's Bulk mailbox.
func (e *env) fillMerge(o *options) error {
	start := time.Now()
	const chunk = 1000
	for k, d := range []*dovecot.Server{e.dov, e.dov2} {
		for i := 0; i < o.mergeMsgs; i += chunk {
			msgs := sample.Generate(int64(100_000*(k+1)+i), min(chunk, o.mergeMsgs-i), mergeSmallLen)
			if err := d.Deliver(userMergeUp, "INBOX", msgs...); err != nil {
				return fmt.Errorf("deliver merge INBOX: %w", err)
			}
		}
	}
	if o.enabled("mergebulk") {
		size := mergeBulkKB * 1000
		n := max(1, o.mergeBulkMB*1_000_000/size)
		const chunk = 100
		for i := 0; i < n; i += chunk {
			msgs := sample.Generate(int64(500_000+i), min(chunk, n-i), size)
			for _, m := range msgs {
				e.mergeBulkBytes += int64(len(m))
			}
			if err := e.dov.Deliver(userMergeUp, mergeBulkBox, msgs...); err != nil {
				return fmt.Errorf("deliver merge bulk: %w", err)
			}
		}
		e.mergeBulkMessages = n
	}
	logf("merge mail delivered in %v (%d + %d INBOX messages; bulk %d messages, %.1f MB)",
		time.Since(start).Round(time.Millisecond), o.mergeMsgs, o.mergeMsgs,
		e.mergeBulkMessages, float64(e.mergeBulkBytes)/1e6)
	return nil
}

// mergeConfig returns the proxy configuration of the merge user: one
// upstream per Dovecot (implicit TLS, no prepared connections) and the
// user "merged" with a unified INBOX. It has no password_hash: the first
// account's Dovecot checks the client's password, which is passed through
// to both accounts.
func (e *env) mergeConfig(caFile, caFile2 string) string {
	return fmt.Sprintf(`
# Merge mode: one user over two Dovecot instances.
[[upstream]]
name = "merge-work"
address = %q
tls = "implicit"
ca_file = %q

[[upstream]]
name = "merge-home"
address = %q
tls = "implicit"
ca_file = %q

[[user]]
name = %q
mode = "merge"
unified_inbox = true
default_account = "work"

[[user.account]]
name = "work"
upstream = "merge-work"
username = %q
password = "passthrough"
prefix = %q

[[user.account]]
name = "home"
upstream = "merge-home"
username = %q
password = "passthrough"
prefix = %q
`, e.dov.TLSAddr, caFile, e.dov2.TLSAddr, caFile2, userMerged,
		userMergeUp, mergeWorkPre, userMergeUp, mergeHomePre)
}

// upstreamConns counts the proxy's established TCP connections to each of
// addrs ("127.0.0.1:port"), by matching the inodes of its socket file
// descriptors against /proc/PID/net/tcp and tcp6. The result is indexed
// like addrs.
func (p *proxyProc) upstreamConns(addrs ...string) ([]int, error) {
	ports := make(map[int]int) // remote port → index in addrs
	for i, a := range addrs {
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		port, err := strconv.Atoi(ps)
		if err != nil {
			return nil, err
		}
		ports[port] = i
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", p.pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool)
	for _, ent := range ents {
		l, err := os.Readlink(filepath.Join(fdDir, ent.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(s, "]")] = true
		}
	}
	counts := make([]int, len(addrs))
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", p.pid, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != "01" || !inodes[fs[9]] { // 01: ESTABLISHED
				continue
			}
			_, hexPort, ok := strings.Cut(fs[2], ":")
			if !ok {
				continue
			}
			port, err := strconv.ParseInt(hexPort, 16, 32)
			if err != nil {
				continue
			}
			if i, ok := ports[int(port)]; ok {
				counts[i]++
			}
		}
		f.Close()
	}
	return counts, nil
}

// exists runs SELECT or EXAMINE and returns the EXISTS count it reports.
func (c *client) exists(cmd string) (int, error) {
	tag, err := c.send(cmd)
	if err != nil {
		return 0, err
	}
	n := -1
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, err
		}
		s := string(trimCRLF(line))
		if rest, ok := strings.CutPrefix(s, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return 0, fmt.Errorf("%s: %s", cmd, rest)
			}
			if n < 0 {
				return 0, fmt.Errorf("%s: no EXISTS", cmd)
			}
			return n, nil
		}
		if f := strings.Fields(s); len(f) == 3 && f[0] == "*" && f[2] == "EXISTS" {
			if n, err = strconv.Atoi(f[1]); err != nil {
				return 0, fmt.Errorf("%s: %q", cmd, s)
			}
		}
	}
}

// fetchCount runs a command whose untagged responses carry no literals
// (UID FETCH … (FLAGS)) and returns the number of FETCH responses.
func (c *client) fetchCount(cmd string) (int, error) {
	tag, err := c.send(cmd)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, err
		}
		if rest, ok := strings.CutPrefix(string(trimCRLF(line)), tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return 0, fmt.Errorf("%s: %s", cmd, rest)
			}
			return n, nil
		}
		if f := strings.Fields(string(line)); len(f) >= 3 && f[0] == "*" && f[2] == "FETCH" {
			n++
		}
	}
}
