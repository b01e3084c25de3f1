package proxy

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the tests, then checks for leaked goroutines and for
// credentials anywhere in the logs of the whole run.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
		if msg := runLogs.leaked(); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
			code = 1
		}
	}
	os.Exit(code)
}

// runLogs collects every log line the proxies of this test run wrote, and
// the credentials the tests used.
var runLogs = &logRecord{secrets: []string{
	// The passwords of the test upstreams' users and of the wrong-password
	// tests; tests register the codes, app passwords and tokens they use.
	"alicepw", "bobpw", "carolpw", "wrong-secret",
}}

type logRecord struct {
	mu      sync.Mutex
	logs    strings.Builder
	secrets []string
}

func (r *logRecord) write(p []byte) {
	r.mu.Lock()
	r.logs.Write(p)
	r.mu.Unlock()
}

// registerSecret adds credentials that must not appear in any log.
func registerSecret(secrets ...string) {
	runLogs.mu.Lock()
	defer runLogs.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= 6 {
			runLogs.secrets = append(runLogs.secrets, s)
		}
	}
}

func (r *logRecord) leaked() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	logs := r.logs.String()
	var found []string
	for _, s := range r.secrets {
		if isCode(s) {
			continue // six digits turn up in timestamps; assertNoSecrets checks codes in context
		}
		if strings.Contains(logs, s) {
			found = append(found, fmt.Sprintf("%.3q… (%d bytes)", s, len(s)))
		}
	}
	if len(found) == 0 {
		return ""
	}
	return fmt.Sprintf("credentials found in the logs of this test run (%d bytes of logs): %s", len(logs), strings.Join(found, ", "))
}

func isCode(s string) bool { return len(s) == 6 && strings.Trim(s, "0123456789") == "" }
