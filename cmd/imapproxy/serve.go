package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/merge"
	"imapproxy/plugins"
	"imapproxy/proxy"
	"imapproxy/router"
)

func runServe(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("serve", "-config FILE", stderr)
	path := fs.String("config", "/etc/imapproxy/config.toml", "config file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy: %v\n", err)
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	raiseFileLimit(logger)
	in, err := startInstance(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy: %v\n", err)
		return 1
	}
	logger.Info("imapproxy started", "version", version, "listeners", len(cfg.Listen))
	waitForSignals(in, cfg.Limits.ShutdownGrace.D())
	return 0
}

// waitForSignals reloads certificates on SIGHUP and shuts down on SIGINT or
// SIGTERM.
func waitForSignals(in *instance, grace time.Duration) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			in.reload()
			continue
		}
		in.log.Info("shutting down", "signal", sig.String(), "grace", grace.String())
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		in.shutdown(ctx)
		cancel()
		return
	}
}

// instance is a running proxy with its admin endpoint.
type instance struct {
	log   *slog.Logger
	proxy *proxy.Server
	certs *proxy.CertStore
	state *state
	auth  *auth.Authenticator
	// merge serves merge-mode users' sessions; closed after the proxy.
	merge *merge.Manager
	// plugins run the [[plugin]] programs; stopped after the proxy.
	plugins *plugins.Host
	admin   *http.Server
	// adminAddr is the admin endpoint's bound address (nil: none).
	adminAddr net.Addr
	done      chan struct{}
}

// startInstance wires the packages together, binds every address and starts
// serving.
func startInstance(cfg *config.Config, logger *slog.Logger) (*instance, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in := &instance{log: logger, done: make(chan struct{})}
	if cfg.TLS.CertFile != "" {
		certs, err := proxy.NewCertStore(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		in.certs = certs
	}
	st, err := openState(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	in.state = st
	var oauth *auth.OAuthVerifier
	if cfg.OAuth.Enabled() {
		oauth, err = auth.NewOAuthVerifier(auth.OAuthOptions{
			Issuer: cfg.OAuth.Issuer, Audience: cfg.OAuth.Audience,
			JWKSURL: cfg.OAuth.JWKSURL, UserClaim: cfg.OAuth.UserClaim,
		})
		if err != nil {
			st.close()
			return nil, fmt.Errorf("[oauth]: %w", err)
		}
	}
	rt := router.New(cfg)
	// Plugins start before anything serves: one that cannot start (a
	// checksum mismatch) stops the boot.
	host, err := plugins.Start(cfg.Plugins, plugins.Options{
		Router: rt, Logger: logger.With("component", "plugins"), Metrics: plugins.NewMetrics(reg),
	})
	if err != nil {
		st.close()
		return nil, err
	}
	in.plugins = host
	authenticator := auth.NewAuthenticator(auth.Options{
		Users:            cfg.Users,
		Store:            st.store,
		Sealer:           st.sealer,
		OAuth:            oauth,
		Verifiers:        host.Verifiers(),
		UpstreamVerifies: rt.VerifiedByUpstream,
		Policy: func(login string) auth.Policy {
			req, grace := rt.Policy(login)
			return auth.Policy{Require2FA: req, TOTPGrace: grace.D()}
		},
		TOTPGrace:        cfg.Auth.TOTPGrace.D(),
		LockoutThreshold: cfg.Auth.LockoutThreshold,
		LockoutWindow:    cfg.Auth.LockoutWindow.D(),
		DelayBase:        cfg.Limits.AuthDelay.D(),
		DelayMax:         cfg.Limits.MaxAuthDelay.D(),
		OnStoreError:     func(err error) { logger.Warn("state store", "err", err) },
	})
	in.auth = authenticator
	in.merge = merge.NewManager(merge.ManagerOptions{Store: st.store, Logger: logger.With("component", "merge"),
		MaxConnsPerAccount: cfg.Limits.MergeConnections})
	srv, err := proxy.New(proxy.Options{
		Config:       cfg,
		Auth:         authenticator,
		Router:       rt,
		Certs:        in.certs,
		Logger:       logger,
		Metrics:      proxy.NewMetrics(reg),
		BearerTokens: cfg.BearerTokens(),
		Revoked:      st.store.RevokedAppPasswords,
		Merge:        in.merge,
		Planner:      host.Planner(),
	})
	if err != nil {
		in.merge.Close()
		authenticator.Close()
		host.Close()
		st.close()
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		in.merge.Close()
		authenticator.Close()
		host.Close()
		st.close()
		return nil, err
	}
	in.proxy = srv
	if cfg.Admin.Address != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			srv.Shutdown(context.Background())
			in.merge.Close()
			authenticator.Close()
			host.Close()
			st.close()
			return nil, fmt.Errorf("admin: listen %s: %w", cfg.Admin.Address, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
		})
		in.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		in.adminAddr = ln.Addr()
		go func() {
			if err := in.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("admin server failed", "err", err)
			}
		}()
	}
	go func() {
		defer close(in.done)
		srv.Serve()
	}()
	return in, nil
}

func (in *instance) reload() {
	if in.certs == nil {
		return
	}
	if err := in.certs.Reload(); err != nil {
		in.log.Error("certificate reload failed; keeping the old one", "err", err)
		return
	}
	in.log.Info("certificate reloaded")
}

// shutdown stops accepting, says BYE to every session and waits until ctx
// is done for them to end.
func (in *instance) shutdown(ctx context.Context) {
	if in.admin != nil {
		in.admin.Shutdown(ctx)
	}
	if err := in.proxy.Shutdown(ctx); err != nil {
		in.log.Warn("sessions still open at the end of the grace period were closed", "err", err)
	}
	<-in.done
	in.merge.Close()   // after the proxy: its merged sessions have ended
	in.auth.Close()    // writes the audit events still queued
	in.plugins.Close() // no login is under way: stop their processes
	in.state.close()
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// raiseFileLimit raises the open-files soft limit to the hard limit, so
// that 10,000 sessions (two descriptors each) fit.
func raiseFileLimit(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur >= lim.Max {
		return
	}
	old := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("could not raise the open-files limit", "err", err)
		return
	}
	logger.Debug("raised the open-files limit", "from", old, "to", lim.Cur)
}
