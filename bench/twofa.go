package main

// The 2FA benchmarks: login2fa (sequential logins with password + TOTP
// code, the proxy checking an argon2id hash) and loginrate (logins per
// second with many concurrent clients).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

// Users of the 2FA benchmarks. All of them log in to Dovecot as alice; the
// proxy gives Dovecot alice's password from the environment variable
// upstreamPWEnv (upstream_password = "env:…").
const (
	// userUpstream is not a [[user]]: the [[route]] rule sends it to
	// Dovecot, which checks its password (verify = "upstream").
	userUpstream = "carol"
	passUpstream = "carolpw"
	// userArgon is a [[user]] with an argon2id password_hash and no TOTP.
	userArgon = "dave"
	// tfaPrefix names the [[user]]s with a password_hash and a TOTP
	// enrolment: tfa000, tfa001, …
	tfaPrefix = "tfa"
	// proxyPass is the password of userArgon and of the tfa users. It does
	// not end in a digit, so password+code splits one way only.
	proxyPass     = "bench-pass"
	upstreamPWEnv = "IMAPPROXY_BENCH_ALICE_PW"
	totpStep      = 30 * time.Second
)

// argon2Params are argon2id cost parameters, as in a PHC string.
type argon2Params struct {
	memoryKiB uint32
	time      uint32
	threads   uint8
}

// String formats p as the PHC parameter field.
func (p argon2Params) String() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d", p.memoryKiB, p.time, p.threads)
}

// proxyDefaultArgon2 are the parameters of imapproxy hash-password
// (auth.HashPassword), for comparison.
var proxyDefaultArgon2 = argon2Params{memoryKiB: 64 * 1024, time: 3, threads: 4}

// parseArgon2Params reads "m=KiB,t=passes,p=lanes".
func parseArgon2Params(s string) (argon2Params, error) {
	var p argon2Params
	var th uint32
	if n, err := fmt.Sscanf(s, "m=%d,t=%d,p=%d", &p.memoryKiB, &p.time, &th); err != nil || n != 3 {
		return p, fmt.Errorf("argon2 parameters %q: want m=KiB,t=passes,p=lanes", s)
	}
	if p.memoryKiB < 8*th || p.time < 1 || th < 1 || th > 255 {
		return p, fmt.Errorf("argon2 parameters %q out of range", s)
	}
	p.threads = uint8(th)
	return p, nil
}

// phcHash hashes password with argon2id, a random 16-byte salt and a
// 32-byte key, as the PHC string imapproxy reads in password_hash:
// $argon2id$v=19$m=…,t=…,p=…$salt$key in unpadded standard base64.
func phcHash(password string, p argon2Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memoryKiB, p.threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$%s$%s$%s", argon2.Version, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// hashTime is the median and the shortest time of one argon2id key
// derivation with p in this process, over n runs after a warm-up: what
// one password check costs the proxy, less the parsing.
func hashTime(p argon2Params, n int) (median, fastest time.Duration) {
	salt := []byte("bench-salt-16byt")
	argon2.IDKey([]byte(proxyPass), salt, p.time, p.memoryKiB, p.threads, 32)
	ds := make([]time.Duration, n)
	for i := range ds {
		t0 := time.Now()
		argon2.IDKey([]byte(proxyPass), salt, p.time, p.memoryKiB, p.threads, 32)
		ds[i] = time.Since(t0)
	}
	return percentile(ds, 50), percentile(ds, 0)
}

// totpUser is a proxy [[user]] enrolled for TOTP.
type totpUser struct {
	name   string
	secret string // base32, as the enrolment printed it
}

// tfaUserName is the name of the i-th TOTP user.
func tfaUserName(i int) string { return fmt.Sprintf("%s%03d", tfaPrefix, i) }

// stepOf is the TOTP time step of t.
func stepOf(t time.Time) int64 { return t.Unix() / int64(totpStep/time.Second) }

// totpCodeAt is the code of secret for step.
func totpCodeAt(secret string, step int64) (string, error) {
	return totp.GenerateCodeCustom(secret, time.Unix(step*int64(totpStep/time.Second), 0), totp.ValidateOpts{
		Period: uint(totpStep / time.Second), Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// codePool hands out TOTP codes the proxy accepts and has never seen.
//
// The proxy accepts the code of the current 30-second step and of the
// steps just before and after it, and records each (user, step) it
// accepts, refusing it again. One user therefore gives at most three
// fresh codes at a time and one more every 30 seconds. The pool spreads
// the logins over many enrolled users and gives each (user, step) once,
// oldest step first (it expires first). The previous step is not handed
// out in the last margin before it expires, so that the proxy still
// accepts it on arrival. When every code is used up, take waits for the
// next step.
type codePool struct {
	mu     sync.Mutex
	users  []totpUser
	used   map[string]map[int64]bool
	next   int   // round-robin position in users
	waited int64 // times take had to wait for a new step
}

// codeMargin is how close to its expiry a previous-step code is still
// handed out.
const codeMargin = 3 * time.Second

func newCodePool() *codePool {
	return &codePool{used: map[string]map[int64]bool{}}
}

// add adds an enrolled user whose enrolment consumed step.
func (p *codePool) add(u totpUser, enrolStep int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users = append(p.users, u)
	p.used[u.name] = map[int64]bool{enrolStep: true}
}

// validSteps are the steps whose codes the proxy will accept a moment
// after now, oldest first.
func validSteps(now time.Time) []int64 {
	cur := stepOf(now)
	end := time.Unix((cur+1)*int64(totpStep/time.Second), 0)
	if end.Sub(now) > codeMargin {
		return []int64{cur - 1, cur, cur + 1}
	}
	return []int64{cur, cur + 1}
}

// take returns a user and the password+code to log in with, never handed
// out before. It waits for the next step when the codes of this one are
// used up.
func (p *codePool) take(ctx context.Context) (user, password string, err error) {
	for {
		p.mu.Lock()
		if len(p.users) == 0 {
			p.mu.Unlock()
			return "", "", errors.New("no TOTP users enrolled")
		}
		now := time.Now()
		steps := validSteps(now)
		for k := 0; k < len(p.users); k++ {
			u := p.users[(p.next+k)%len(p.users)]
			for _, s := range steps {
				if p.used[u.name][s] {
					continue
				}
				p.used[u.name][s] = true
				p.next = (p.next + k + 1) % len(p.users)
				p.mu.Unlock()
				code, err := totpCodeAt(u.secret, s)
				if err != nil {
					return "", "", err
				}
				return u.name, proxyPass + code, nil
			}
		}
		p.waited++
		p.mu.Unlock()
		wake := time.Unix((stepOf(now)+1)*int64(totpStep/time.Second), 0).Add(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(time.Until(wake)):
		}
	}
}

// enrolTOTP enrols the TOTP users with the proxy binary's own admin verb,
// "imapproxy user totp enroll USER -config CFG -no-qr", par at a time: it
// reads the secret the verb prints and answers with a valid code. The code
// given is that of the previous step where possible, so that the current
// and next steps stay free for logins.
func (e *env) enrolTOTP(ctx context.Context, n, par int) (*codePool, error) {
	pool := newCodePool()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				u, step, err := e.enrolOne(ctx, tfaUserName(i))
				if err != nil {
					errs <- err
					next.Store(int64(n))
					return
				}
				pool.add(u, step)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// The same order in every run: tfa000, tfa001, …
	slices.SortFunc(pool.users, func(a, b totpUser) int { return strings.Compare(a.name, b.name) })
	return pool, nil
}

// enrolOne runs the enrolment dialogue for one user and returns the secret
// and the step whose code confirmed it (which the proxy now refuses).
func (e *env) enrolOne(ctx context.Context, name string) (totpUser, int64, error) {
	cmd := exec.CommandContext(ctx, e.proxyBin, "user", "totp", "enroll", name, "-config", e.proxyCfg, "-no-qr")
	cmd.Env = e.proxyEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return totpUser{}, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return totpUser{}, 0, err
	}
	if err := cmd.Start(); err != nil {
		return totpUser{}, 0, err
	}
	fail := func(err error) (totpUser, int64, error) {
		stdin.Close()
		cmd.Wait()
		return totpUser{}, 0, fmt.Errorf("totp enroll %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	// "Or enter this secret by hand (…):" is followed by "  SECRET".
	br := bufio.NewReader(stdout)
	secret := ""
	for secret == "" {
		line, err := br.ReadString('\n')
		if err != nil {
			return fail(fmt.Errorf("no secret in the output: %w", err))
		}
		if strings.Contains(line, "secret by hand") {
			next, err := br.ReadString('\n')
			if err != nil {
				return fail(err)
			}
			secret = strings.TrimSpace(next)
		}
	}
	step := validSteps(time.Now())[0]
	code, err := totpCodeAt(secret, step)
	if err != nil {
		return fail(err)
	}
	if _, err := io.WriteString(stdin, code+"\n"); err != nil {
		return fail(err)
	}
	stdin.Close()
	rest, _ := io.ReadAll(br)
	if err := cmd.Wait(); err != nil {
		return totpUser{}, 0, fmt.Errorf("totp enroll %s: %w: %s%s", name, err, rest, strings.TrimSpace(stderr.String()))
	}
	if !strings.Contains(string(rest), "TOTP is enrolled") {
		return totpUser{}, 0, fmt.Errorf("totp enroll %s: unexpected output %q", name, rest)
	}
	return totpUser{name: name, secret: secret}, step, nil
}

// totpPool enrols the TOTP users on first use; login2fa and loginrate
// share them, and with them the record of the codes already used.
func (e *env) totpPool(ctx context.Context, o *options) (*codePool, error) {
	e.poolOnce.Do(func() {
		start := time.Now()
		e.pool, e.poolErr = e.enrolTOTP(ctx, o.tfaUsers, 4)
		if e.poolErr == nil {
			logf("enrolled %d TOTP users in %v", o.tfaUsers, time.Since(start).Round(time.Millisecond))
		}
	})
	return e.pool, e.poolErr
}

// loginLogout does connect, TLS, greeting, LOGIN and LOGOUT.
func loginLogout(ctx context.Context, s side) error {
	c, err := login(ctx, s.addr, s.tls, s.user, s.pass, cmdTimeout)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.ok("LOGOUT"); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// benchLogin2FA measures connect + TLS + LOGIN + LOGOUT one after another:
// directly with alice's plain password, and through the proxy as TOTP
// users whose password the proxy checks against an argon2id hash, with a
// fresh TOTP code appended to it on every login (no grace window).
func benchLogin2FA(ctx context.Context, e *env, o *options, rep *report) error {
	// The hash cost in this process, before the proxy is loaded.
	chosen, chosenMin := hashTime(e.argon2, 9)
	dflt, dfltMin := hashTime(proxyDefaultArgon2, 5)
	pool, err := e.totpPool(ctx, o)
	if err != nil {
		return err
	}
	direct := side{"direct", e.directTLS, e.clientTLS, userTLS, passTLS}
	var dd, pd []time.Duration
	var proxyCPU time.Duration
	measureDirect := func(into *[]time.Duration) func() error {
		return func() error {
			t0 := time.Now()
			if err := loginLogout(ctx, direct); err != nil {
				return err
			}
			if into != nil {
				*into = append(*into, time.Since(t0))
			}
			return nil
		}
	}
	measureProxy := func(into *[]time.Duration) func() error {
		return func() error {
			user, pass, err := pool.take(ctx)
			if err != nil {
				return err
			}
			cpu0 := e.proxy.cpuTime()
			t0 := time.Now()
			if err := loginLogout(ctx, side{"proxy", e.proxyTLS, e.clientTLS, user, pass}); err != nil {
				return err
			}
			if into != nil {
				*into = append(*into, time.Since(t0))
				proxyCPU += e.proxy.cpuTime() - cpu0
			}
			return nil
		}
	}
	for i := 0; i < 5; i++ {
		if err := interleave(i, measureDirect(nil), measureProxy(nil)); err != nil {
			return err
		}
	}
	for i := 0; i < o.login2faN && ctx.Err() == nil; i++ {
		if err := interleave(i, measureDirect(&dd), measureProxy(&pd)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dMed, pMed := percentile(dd, 50), percentile(pd, 50)
	dP99, pP99 := percentile(dd, 99), percentile(pd, 99)
	rep.add(row{"login2fa (TLS)", fmt.Sprintf("median, argon2id %s + TOTP, n=%d", e.argon2, len(dd)), ms(dMed), ms(pMed),
		ratio(float64(pMed), float64(dMed)) + fmt.Sprintf(" (%+.2f ms)", float64(pMed-dMed)/1e6),
		"< 50 ms", verdict(pMed < 50*time.Millisecond)})
	rep.add(row{"login2fa (TLS)", "p99", ms(dP99), ms(pP99),
		ratio(float64(pP99), float64(dP99)) + fmt.Sprintf(" (%+.2f ms)", float64(pP99-dP99)/1e6), "-", info})
	rep.note("login2fa: one argon2id hash in this process takes %s (fastest %s) with %s, used here; %s (fastest %s) with the former default of imapproxy hash-password, %s",
		ms(chosen), ms(chosenMin), e.argon2, ms(dflt), ms(dfltMin), proxyDefaultArgon2)
	rep.note("login2fa: the proxy used %.2f ms of CPU per password+TOTP login; %d TOTP users gave one fresh code each per login (%d waits for a new 30 s step)",
		float64(proxyCPU)/1e6/float64(len(pd)), len(pool.users), pool.waited)
	return nil
}

// benchLoginRate measures how many logins per second many concurrent
// clients get: each does connect + TLS + LOGIN + LOGOUT in a loop. Sides:
// Dovecot directly; the proxy with a login Dovecot verifies (route
// verify = "upstream"); the proxy checking an argon2id hash; and the
// proxy checking the hash and a TOTP code, with codes from the pool.
func benchLoginRate(ctx context.Context, e *env, o *options, rep *report) error {
	pool, err := e.totpPool(ctx, o)
	if err != nil {
		return err
	}
	type rateSide struct {
		name    string
		s       side
		useTOTP bool
		proxied bool

		logins   int64
		elapsed  time.Duration
		cpu      time.Duration // proxy CPU time during the rounds
		waited   int64         // TOTP: waits for a new step
		peakKiB  int64         // proxy VmHWM, largest over the rounds
		peakNote bool
	}
	sides := []*rateSide{
		{name: "direct", s: side{"direct", e.directTLS, e.clientTLS, userTLS, passTLS}},
		{name: "upstream-verified", s: side{"proxy", e.proxyTLS, e.clientTLS, userUpstream, passUpstream}, proxied: true},
		{name: "argon2id", s: side{"proxy", e.proxyTLS, e.clientTLS, userArgon, proxyPass}, proxied: true},
		{name: "argon2id+TOTP", s: side{"proxy", e.proxyTLS, e.clientTLS, "", ""}, useTOTP: true, proxied: true},
	}
	round := func(rs *rateSide, d time.Duration, measured bool) error {
		// Only the argon2id sides: a check holds m KiB while it runs.
		resetPeak := rs.s.user != userUpstream && rs.proxied && measured && e.proxy.resetPeakRSS() == nil
		cpu0 := e.proxy.cpuTime()
		waited0 := pool.waitCount()
		var logins atomic.Int64
		var firstErr atomic.Pointer[error]
		var wg sync.WaitGroup
		start := time.Now()
		end := start.Add(d)
		for i := 0; i < o.rateClients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) && ctx.Err() == nil && firstErr.Load() == nil {
					s := rs.s
					if rs.useTOTP {
						// A slow take (a wait for the next step) still
						// counts: codes are part of the cost.
						u, p, err := pool.take(ctx)
						if err != nil {
							firstErr.CompareAndSwap(nil, &err)
							return
						}
						s.user, s.pass = u, p
					}
					if err := loginLogout(ctx, s); err != nil {
						err = fmt.Errorf("%s: %w", rs.name, err)
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					logins.Add(1)
				}
			}()
		}
		wg.Wait()
		if measured {
			rs.elapsed += time.Since(start)
			rs.logins += logins.Load()
			rs.cpu += e.proxy.cpuTime() - cpu0
			rs.waited += pool.waitCount() - waited0
			if resetPeak {
				if kib, err := procStatusKiB(e.proxy.pid, "VmHWM:"); err == nil {
					rs.peakKiB, rs.peakNote = max(rs.peakKiB, kib), true
				}
			}
		}
		if p := firstErr.Load(); p != nil {
			return *p
		}
		return ctx.Err()
	}
	// Warm-up, unmeasured.
	for _, rs := range sides {
		if err := round(rs, 300*time.Millisecond, false); err != nil {
			return err
		}
	}
	per := o.rateDur / time.Duration(o.rateRounds)
	for r := 0; r < o.rateRounds && ctx.Err() == nil; r++ {
		// Rotate the order so that drifting load hits every side.
		for k := range sides {
			if err := round(sides[(r+k)%len(sides)], per, true); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rate := func(rs *rateSide) float64 { return float64(rs.logins) / rs.elapsed.Seconds() }
	dRate := rate(sides[0])
	for _, rs := range sides[1:] {
		pRate := rate(rs)
		v := info
		if rs.waited > 0 {
			v = "info (too few TOTP codes: raise -tfa-users)"
		}
		rep.add(row{"loginrate (TLS)", fmt.Sprintf("logins/s, %s, %d clients, %v", rs.name, o.rateClients, o.rateDur),
			fmt.Sprintf("%.0f", dRate), fmt.Sprintf("%.0f", pRate), ratio(pRate, dRate), "-", v})
		per := float64(rs.cpu) / 1e6 / float64(max(rs.logins, 1))
		n := fmt.Sprintf("loginrate %s: the proxy used %.0f%% of a core, %.2f ms of CPU per login",
			rs.name, 100*rs.cpu.Seconds()/rs.elapsed.Seconds(), per)
		if rs.peakNote {
			n += fmt.Sprintf("; peak RSS (VmHWM) %.0f MiB", float64(rs.peakKiB)/1024)
		}
		if rs.waited > 0 {
			n += fmt.Sprintf("; clients waited %d times for a new 30 s step (TOTP codes used up)", rs.waited)
		}
		rep.note("%s", n)
	}
	return nil
}

// waitCount is how many times take has waited for a new step.
func (p *codePool) waitCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waited
}

// resetPeakRSS resets the proxy's VmHWM (peak resident set) to its current
// RSS, by writing 5 to /proc/PID/clear_refs.
func (p *proxyProc) resetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0)
}
