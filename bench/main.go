// Command bench measures imapproxy's route mode against a real Dovecot
// reached directly, in the same run, and its merge mode (one user over two
// Dovecot instances) against the same accounts reached directly.
//
// It starts one Dovecot 2.3 instance in a temporary directory, builds the
// proxy (go build ./cmd/imapproxy) and runs it as a child process with a
// generated configuration, so that its memory can be read from /proc. Every
// benchmark then runs once against Dovecot directly and once through the
// proxy, alternating rounds so that machine noise hits both sides, and the
// program prints a table of direct and proxy figures, their ratio and
// whether the target is met.
//
//	go run ./bench                        # everything
//	go run ./bench -quick                 # a fast smoke run
//	go run ./bench -only login,bulk -bulk-mb 200
//
// See bench/README.md for what each benchmark measures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// benchNames are the benchmarks in the order they run.
var benchNames = []string{"login", "login2fa", "select", "concurrent", "bulk", "rss", "burst", "loginrate",
	"mergeselect", "mergebulk", "mergerss", "mergemove", "pluginlogin"}

// options are the command-line settings.
type options struct {
	only map[string]bool // nil: all

	loginN       int
	selectN      int
	bulkMB       int
	bulkMsgKB    int
	bulkRounds   int
	concClients  int
	concDur      time.Duration
	concRounds   int
	sessions     int
	settle       time.Duration
	burst        int
	burstTimeout time.Duration
	burstRounds  int
	login2faN    int
	tfaUsers     int
	argon2       argon2Params
	rateClients  int
	rateDur      time.Duration
	rateRounds   int

	mergeMsgs     int
	mergeRounds   int
	mergeBulkMB   int
	mergeSessions int

	mergeMoveMB     int
	mergeMoveRounds int

	quick    bool
	markdown bool
	keep     bool
	perfDir  string
	proxyBin string
}

// enabled reports whether benchmark name was selected.
func (o *options) enabled(name string) bool {
	return o.only == nil || o.only[name]
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("only", "", "comma-separated benchmarks to run: "+strings.Join(benchNames, ",")+" (default all)")
	fs.IntVar(&o.loginN, "login-n", 300, "login, pluginlogin: logins per side")
	fs.IntVar(&o.selectN, "select-n", 500, "select: SELECT + UID FETCH (FLAGS) rounds per side")
	fs.IntVar(&o.bulkMB, "bulk-mb", 100, "bulk: megabytes of mail to fetch")
	fs.IntVar(&o.bulkMsgKB, "bulk-msg-kb", 100, "bulk: size of each message in kB")
	fs.IntVar(&o.bulkRounds, "bulk-rounds", 3, "bulk: timed fetches per side (median is reported)")
	fs.IntVar(&o.concClients, "clients", 50, "concurrent: clients per side")
	fs.DurationVar(&o.concDur, "conc-time", 5*time.Second, "concurrent: total measuring time per side")
	fs.IntVar(&o.concRounds, "conc-rounds", 2, "concurrent: rounds the time per side is split into")
	fs.IntVar(&o.sessions, "sessions", 1000, "rss: idle sessions opened through the proxy")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "rss: wait before each RSS reading")
	fs.IntVar(&o.burst, "burst", 1000, "burst: clients connecting at once")
	fs.DurationVar(&o.burstTimeout, "burst-timeout", 10*time.Second, "burst: time allowed for a greeting")
	fs.IntVar(&o.burstRounds, "burst-rounds", 1, "burst: rounds per side")
	fs.IntVar(&o.login2faN, "login2fa-n", 200, "login2fa: password+TOTP logins per side")
	fs.IntVar(&o.tfaUsers, "tfa-users", 300, "login2fa, loginrate: TOTP users to enrol (each gives about 3 fresh codes, then one per 30 s)")
	argon := fs.String("argon2", "m=19456,t=2,p=1", "login2fa, loginrate: argon2id parameters of the proxy users' password_hash")
	fs.IntVar(&o.rateClients, "rate-clients", 50, "loginrate: concurrent clients")
	fs.DurationVar(&o.rateDur, "rate-time", 10*time.Second, "loginrate: measuring time per side")
	fs.IntVar(&o.rateRounds, "rate-rounds", 2, "loginrate: rounds the time per side is split into")
	fs.IntVar(&o.mergeMsgs, "merge-msgs", 5000, "mergeselect, mergerss: ~2 KB messages in each merged account's INBOX")
	fs.IntVar(&o.mergeRounds, "merge-rounds", 20, "mergeselect: SELECT + UID FETCH (FLAGS) rounds per side")
	fs.IntVar(&o.mergeBulkMB, "merge-bulk-mb", 50, "mergebulk: megabytes of mail in the merged account's Work/Bulk")
	fs.IntVar(&o.mergeSessions, "merge-sessions", 200, "mergerss: idle merged sessions of the one user")
	fs.IntVar(&o.mergeMoveMB, "merge-move-mb", 50, "mergemove: megabytes of 100 kB messages moved across accounts each round (1024: the 1 GB heap check)")
	fs.IntVar(&o.mergeMoveRounds, "merge-move-rounds", 3, "mergemove: timed moves per side, interleaved")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: small sizes everywhere (explicit flags still win)")
	fs.BoolVar(&o.markdown, "markdown", false, "print the table as Markdown")
	fs.StringVar(&o.proxyBin, "proxy-bin", "", "use this imapproxy binary instead of building ./cmd/imapproxy")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, configuration)")
	fs.StringVar(&o.perfDir, "perf", "", "diagnostics: record a perf(1) profile of the proxy during each benchmark into this directory")
	err := fs.Parse(args)
	if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"login-n":        func() { o.loginN = 30 },
			"select-n":       func() { o.selectN = 50 },
			"bulk-mb":        func() { o.bulkMB = 10 },
			"conc-time":      func() { o.concDur = time.Second },
			"clients":        func() { o.concClients = 10 },
			"sessions":       func() { o.sessions = 100 },
			"settle":         func() { o.settle = 500 * time.Millisecond },
			"burst":          func() { o.burst = 100 },
			"login2fa-n":     func() { o.login2faN = 20 },
			"tfa-users":      func() { o.tfaUsers = 60 },
			"rate-clients":   func() { o.rateClients = 10 },
			"rate-time":      func() { o.rateDur = time.Second },
			"merge-msgs":     func() { o.mergeMsgs = 500 },
			"merge-rounds":   func() { o.mergeRounds = 5 },
			"merge-bulk-mb":  func() { o.mergeBulkMB = 10 },
			"merge-sessions": func() { o.mergeSessions = 50 },
			"merge-move-mb":  func() { o.mergeMoveMB = 10 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	if o.argon2, err = parseArgon2Params(*argon); err != nil {
		return nil, err
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if n == "conc" {
				n = "concurrent"
			}
			known := false
			for _, b := range benchNames {
				known = known || b == n
			}
			if !known {
				return nil, fmt.Errorf("unknown benchmark %q (have %s)", n, strings.Join(benchNames, ","))
			}
			o.only[n] = true
		}
	}
	if o.loginN < 1 || o.selectN < 1 || o.bulkMB < 1 || o.bulkMsgKB < 1 || o.bulkRounds < 1 ||
		o.concClients < 1 || o.concRounds < 1 || o.sessions < 1 || o.burst < 1 || o.burstRounds < 1 ||
		o.login2faN < 1 || o.tfaUsers < 1 || o.rateClients < 1 || o.rateRounds < 1 ||
		o.mergeMsgs < 1 || o.mergeRounds < 1 || o.mergeBulkMB < 1 || o.mergeSessions < 2 ||
		o.mergeMoveMB < 1 || o.mergeMoveRounds < 1 {
		return nil, fmt.Errorf("counts and sizes must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if err.Error() != "flag: help requested" {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(2)
	}
	os.Exit(run(o))
}

// run sets up, runs the selected benchmarks, prints the table and cleans
// up. It returns the exit code: 1 if a benchmark could not run.
func run(o *options) int {
	raiseFileLimit()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The first signal cancels ctx: the benchmarks stop at their next
	// step and run returns through its deferred cleanup. If that takes too
	// long, or a second signal comes, the handler cleans up and exits.
	finished := make(chan struct{})
	defer close(finished)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-sigs:
			logf("%v: stopping and cleaning up", sig)
		case <-finished:
			return
		}
		cancel()
		select {
		case <-sigs:
		case <-time.After(20 * time.Second):
		case <-finished:
			return
		}
		if e := currentEnv.Load(); e != nil {
			e.cleanup(o.keep)
		}
		os.Exit(130)
	}()

	e, err := setupEnv(ctx, o)
	if e != nil {
		defer e.cleanup(o.keep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: setup:", err)
		return 1
	}

	rep := &report{}
	benches := map[string]func(context.Context, *env, *options, *report) error{
		"login":      benchLogin,
		"select":     benchSelect,
		"concurrent": benchConcurrent,
		"bulk":       benchBulk,
		"rss":        benchRSS,
		"burst":      benchBurst,
		"login2fa":   benchLogin2FA,
		"loginrate":  benchLoginRate,

		"mergeselect": benchMergeSelect,
		"mergebulk":   benchMergeBulk,
		"mergerss":    benchMergeRSS,
		"mergemove":   benchMergeMove,

		"pluginlogin": benchPluginLogin,
	}
	code := 0
loop:
	for _, name := range benchNames {
		if !o.enabled(name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		logf("%s: running", name)
		var rec *perfRecorder
		if o.perfDir != "" && name != "rss" && name != "mergerss" { // they restart the proxy
			if rec, err = startPerf(o.perfDir, name, e.proxy.pid); err != nil {
				logf("%v", err)
			}
		}
		err := benches[name](ctx, e, o, rep)
		if rec != nil {
			rec.stop()
		}
		if err != nil {
			logf("%s: %v", name, err)
			rep.fail(name, err)
			code = 1
		}
		logf("%s: done in %v", name, time.Since(start).Round(100*time.Millisecond))
		// A dead proxy would make every later figure meaningless: note it
		// and start a new one.
		select {
		case <-e.proxy.exited:
			rep.note("the proxy exited during %s: %v", name, e.proxy.waitErr)
			code = 1
			if err := e.restartProxy(); err != nil {
				rep.note("restarting the proxy failed: %v", err)
				break loop
			}
		default:
		}
	}
	if ctx.Err() != nil {
		rep.note("interrupted")
		code = 130
	}

	fmt.Printf("\nimapproxy benchmark (route and merge mode), %s, %d CPUs, %s/%s, %s\n",
		time.Now().Format("2006-01-02 15:04"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Println("Dovecot, the proxy and the benchmark client share the machine's CPUs.")
	fmt.Println()
	rep.print(os.Stdout, o.markdown)
	return code
}

// raiseFileLimit sets the open-files soft limit to the hard limit; Dovecot
// and the proxy inherit it.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			logf("could not raise the open-files limit: %v", err)
		}
	}
}

// logf writes a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
