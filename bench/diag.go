package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scrapeMetrics reads the proxy's admin /metrics endpoint and returns the
// unlabelled samples whose names are in want. The Go collector there gives
// a breakdown of the proxy's memory (heap, stacks) and its goroutines.
func scrapeMetrics(addr string, want ...string) (map[string]float64, error) {
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !wanted[f[0]] {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

// perfRecorder samples the proxy process with perf(1) while one benchmark
// runs: a diagnostic aid (-perf DIR), not part of the measurement.
type perfRecorder struct {
	cmd *exec.Cmd
	out string
}

// startPerf attaches perf record to pid, writing DIR/NAME.perf.data.
func startPerf(dir, name string, pid int) (*perfRecorder, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-q", "-F", "997", "-g", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // let it attach
	return &perfRecorder{cmd: cmd, out: out}, nil
}

// stop ends the recording and waits for perf to write its file.
func (p *perfRecorder) stop() {
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	logf("perf profile of the proxy: %s (perf report -i %s --no-children)", p.out, p.out)
}
