package plugins

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/router"
)

// Options configure a Host.
type Options struct {
	// Router checks router plugins' plans; required with router plugins.
	Router  *router.Router
	Logger  *slog.Logger // nil: slog.Default()
	Metrics *Metrics     // nil: unregistered metrics
}

// Host runs the configured plugins. Close stops them.
type Host struct {
	procs     []*process
	verifiers []auth.Verifier
	planners  planners
	closeOnce sync.Once
}

// Start starts every plugin of cfgs (the [[plugin]] entries, defaults
// applied), in order. If one cannot be started, for instance because its
// executable does not match its sha256, the others are stopped and the
// error says which and why.
func Start(cfgs []config.Plugin, o Options) (*Host, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	h := &Host{}
	for _, c := range cfgs {
		if c.Kind == config.PluginRouter && o.Router == nil {
			h.Close()
			return nil, errors.New("plugins: router plugins need Options.Router")
		}
		p, err := startProcess(c, o.Logger, o.Metrics)
		if err != nil {
			h.Close()
			return nil, err
		}
		h.procs = append(h.procs, p)
		cache := newCache(c.CacheTTL.D())
		switch c.Kind {
		case config.PluginRouter:
			h.planners = append(h.planners, &planner{p: p, rt: o.Router, cache: cache})
		default:
			h.verifiers = append(h.verifiers, &authenticator{p: p, cache: cache})
		}
	}
	return h, nil
}

// Verifiers returns the authenticator plugins, in configuration order,
// for auth.Options.Verifiers.
func (h *Host) Verifiers() []auth.Verifier {
	return h.verifiers
}

// Planner returns the router plugins as one router.Planner (the first
// that decides wins), or nil without router plugins.
func (h *Host) Planner() router.Planner {
	if len(h.planners) == 0 {
		return nil
	}
	return h.planners
}

// PIDs returns, for each plugin by name, the ids of every process it has
// had (the last is the current one, while it runs).
func (h *Host) PIDs() map[string][]int {
	m := make(map[string][]int, len(h.procs))
	for _, p := range h.procs {
		m[p.cfg.Name] = p.pidList()
	}
	return m
}

// Close stops every plugin and waits for its process to exit. Calls
// after Close fail as if the plugins had crashed. Later calls do
// nothing.
func (h *Host) Close() {
	if h == nil {
		return
	}
	h.closeOnce.Do(func() {
		for _, p := range h.procs {
			p.close()
		}
	})
}

// SHA256 returns the hex sha256 of the file at path, as [[plugin]]
// sha256 wants it.
func SHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
