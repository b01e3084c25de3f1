package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"imapproxy/config"
	"imapproxy/plugins/sdk"
)

// Restart delays: the first restart after a crash waits minBackoff, each
// further one twice as long up to maxBackoff; a plugin that stayed up
// for stableAfter starts again from minBackoff.
const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
	stableAfter  = time.Minute
	pollInterval = 100 * time.Millisecond
	startTimeout = 10 * time.Second
)

// errNotRunning: the plugin's process is down (between a crash and its
// restart).
var errNotRunning = errors.New("plugin is not running")

// process is one plugin's running program. A supervisor goroutine owned
// by process restarts it when it dies, until close.
type process struct {
	cfg     config.Plugin
	log     *slog.Logger
	metrics *Metrics
	sum     []byte

	mu      sync.Mutex
	client  *plugin.Client
	conn    *grpc.ClientConn
	started time.Time
	pids    []int // every process started, in order

	stop chan struct{}
	done chan struct{}
}

// startProcess starts the plugin of cfg, and its supervisor. The first
// start must succeed: a checksum mismatch, a missing file or a failed
// handshake is the error of the proxy's boot.
func startProcess(cfg config.Plugin, log *slog.Logger, m *Metrics) (*process, error) {
	sum, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("plugin %q: sha256 %q is not 64 hexadecimal digits", cfg.Name, cfg.SHA256)
	}
	p := &process{cfg: cfg, log: log.With("plugin", cfg.Name), metrics: m, sum: sum,
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := p.start(); err != nil {
		return nil, err
	}
	go p.supervise()
	return p, nil
}

// start runs the program and connects to it.
func (p *process) start() error {
	cmd := exec.Command(p.cfg.Command, p.cfg.Args...)
	dieWithProxy(cmd)
	names := make([]string, 0, len(p.cfg.Env))
	for k := range p.cfg.Env {
		names = append(names, k)
	}
	sort.Strings(names)
	cmd.Env = []string{}
	for _, k := range names {
		cmd.Env = append(cmd.Env, k+"="+p.cfg.Env[k])
	}
	name := kindName(p.cfg.Kind)
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{name: &sdk.Service{}},
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: p.sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           newSlogAdapter(p.log, filepath.Base(p.cfg.Command)),
		AutoMTLS:         true,
		SkipHostEnv:      true, // the proxy's environment may hold its server key
		StartTimeout:     startTimeout,
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return fmt.Errorf("plugin %q: %s does not match its sha256 %s: not starting it (sha256sum shows the file's checksum)",
				p.cfg.Name, p.cfg.Command, p.cfg.SHA256)
		}
		return fmt.Errorf("plugin %q: start %s: %w", p.cfg.Name, p.cfg.Command, err)
	}
	raw, err := rpc.Dispense(name)
	conn, ok := raw.(*grpc.ClientConn)
	if err != nil || !ok {
		c.Kill()
		return fmt.Errorf("plugin %q: no %s service: %v", p.cfg.Name, name, err)
	}
	pid, _ := strconv.Atoi(c.ID())
	p.mu.Lock()
	p.client, p.conn, p.started = c, conn, time.Now()
	p.pids = append(p.pids, pid)
	p.mu.Unlock()
	p.metrics.Up.WithLabelValues(p.cfg.Name).Set(1)
	p.log.Info("plugin started", "pid", pid, "kind", string(p.cfg.Kind))
	return nil
}

func kindName(k config.PluginKind) string {
	if k == config.PluginRouter {
		return sdk.RouterService
	}
	return sdk.AuthenticatorService
}

// supervise restarts the plugin when its process dies, with growing
// delays, and stops it at close.
func (p *process) supervise() {
	defer close(p.done)
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("plugin supervisor panic", "panic", r, "stack", string(debug.Stack()))
			p.kill()
		}
	}()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	backoff := minBackoff
	for {
		select {
		case <-p.stop:
			p.kill()
			return
		case <-tick.C:
		}
		p.mu.Lock()
		c, started := p.client, p.started
		p.mu.Unlock()
		if c != nil && !c.Exited() {
			if time.Since(started) >= stableAfter {
				backoff = minBackoff
			}
			continue
		}
		if c != nil {
			p.log.Warn("plugin died; restarting", "delay", backoff.String())
			p.kill()
		}
		select {
		case <-p.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		if err := p.start(); err != nil {
			p.log.Error("plugin restart failed", "err", err)
			continue
		}
		p.metrics.Restarts.WithLabelValues(p.cfg.Name).Inc()
	}
}

// kill ends the current process, if any, and waits for it.
func (p *process) kill() {
	p.mu.Lock()
	c := p.client
	p.client, p.conn = nil, nil
	p.mu.Unlock()
	p.metrics.Up.WithLabelValues(p.cfg.Name).Set(0)
	if c != nil {
		c.Kill()
	}
}

// close stops the plugin and its supervisor; the process has exited
// when close returns.
func (p *process) close() {
	close(p.stop)
	<-p.done
}

// current returns the connection to the running process.
func (p *process) current() (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil || p.client != nil && p.client.Exited() {
		return nil, errNotRunning
	}
	return p.conn, nil
}

// pidList returns every process id the plugin has had.
func (p *process) pidList() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.pids...)
}

// callError is a failed call with its metrics result: "unavailable"
// (not running, or it died during the call), "timeout", "error" (the
// plugin returned an error) or "malformed" (an answer the host refuses).
type callError struct {
	result string
	err    error
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

func malformed(format string, args ...any) error {
	return &callError{result: "malformed", err: fmt.Errorf("malformed answer: "+format, args...)}
}

// invoke runs one call with the plugin's timeout and classifies its
// failure.
func (p *process) invoke(ctx context.Context, call func(context.Context, *grpc.ClientConn) error) error {
	conn, err := p.current()
	if err != nil {
		return &callError{result: "unavailable", err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout.D())
	defer cancel()
	start := time.Now()
	err = call(ctx, conn)
	p.metrics.Seconds.WithLabelValues(p.cfg.Name).Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return &callError{result: "timeout", err: fmt.Errorf("no answer within %s", p.cfg.Timeout.D())}
	case codes.Unavailable, codes.Canceled:
		return &callError{result: "unavailable", err: err}
	}
	return &callError{result: "error", err: err}
}
