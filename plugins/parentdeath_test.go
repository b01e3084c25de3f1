package plugins

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imapproxy/config"
	"imapproxy/router"
)

// helperEnv holds, in a helper process, the built plugins' paths (JSON).
const helperEnv = "IMAPPROXY_PLUGINS_HELPER"

// TestPluginHelperProxy is the helper process of
// TestPluginsDieWithTheProxy: a "proxy" that starts the userfile plugin,
// prints its PID and waits to be killed.
func TestPluginHelperProxy(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("the helper process of TestPluginsDieWithTheProxy")
	}
	users := writeJSON(t, map[string]any{"users": []any{}})
	h, err := Start([]config.Plugin{pluginConfig(t, "userfile", config.PluginAuthenticator, "-users", users)},
		Options{Router: router.New(&config.Config{}), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fmt.Printf("plugin pid %d\n", h.PIDs()["userfile"][0])
	io.Copy(io.Discard, os.Stdin) // until the parent kills us
}

// TestPluginsDieWithTheProxy: a proxy killed with SIGKILL, which cannot
// stop its plugins, leaves none running: the kernel kills them
// (dieWithProxy).
func TestPluginsDieWithTheProxy(t *testing.T) {
	paths, err := json.Marshal(built)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPluginHelperProxy$", "-test.v")
	// The helper cannot clean up after itself: its files go into ours.
	cmd.Env = append(os.Environ(), helperEnv+"="+string(paths), "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := 0
	sc := bufio.NewScanner(out)
	for pid == 0 && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "plugin pid "); ok {
			pid, _ = strconv.Atoi(rest)
		}
	}
	if pid == 0 {
		t.Fatalf("the helper printed no plugin PID: %v", sc.Err())
	}
	go io.Copy(io.Discard, out)
	if !alive(pid) {
		t.Fatalf("plugin %d not running under the helper", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d still runs 10s after its proxy was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
