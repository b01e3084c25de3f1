package main

// The pluginlogin benchmark: the latency a plugin authenticator adds to a
// login. Two extra proxy processes run side by side, from the usual
// configuration with their own addresses and state directories: in one,
// dave is a [[user]] whose argon2id hash the proxy checks (the built-in
// authenticator); the other also has a [[plugin]], the userfile example
// plugin, holding the same hash for dave under the login "plug". Both log
// in to Dovecot as alice with the stored password, so the two logins
// differ by the plugin call alone (the hash is computed in the plugin's
// process instead of the proxy's). The hash is a cheap one (pluginArgon2)
// on both sides: a real one varies by several milliseconds from login to
// login on a shared machine, more than the plugin call costs.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"imapproxy/plugins"
	"imapproxy/plugins/examples"
)

// userPluginLogin is the userfile plugin's login for dave.
const userPluginLogin = "plug"

// pluginArgon2 are the argon2id parameters of dave's hash on both sides.
var pluginArgon2 = argon2Params{memoryKiB: 1024, time: 1, threads: 1}

// startVariantProxy starts another proxy process from the usual
// configuration with dave's password_hash replaced by hash, on its own
// addresses and state directory, with extra appended, and returns it with
// its TLS address.
func (e *env) startVariantProxy(name, hash, extra string) (*proxyProc, string, error) {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, "", err
	}
	base, err := os.ReadFile(e.proxyCfg)
	if err != nil {
		return nil, "", err
	}
	cfg := string(base)
	tlsAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	for _, old := range []string{e.proxyPlain, e.adminAddr} {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		cfg = strings.Replace(cfg, fmt.Sprintf("%q", old), fmt.Sprintf("%q", addr), 1)
	}
	cfg = strings.Replace(cfg, fmt.Sprintf("%q", e.proxyTLS), fmt.Sprintf("%q", tlsAddr), 1)
	cfg = strings.Replace(cfg, fmt.Sprintf("state_dir = %q", filepath.Join(e.dir, "proxy", "state")),
		fmt.Sprintf("state_dir = %q", filepath.Join(dir, "state")), 1)
	old := fmt.Sprintf("name = %q\npassword_hash = ", userArgon)
	i := strings.Index(cfg, old)
	if i < 0 {
		return nil, "", fmt.Errorf("%s: no password_hash for %s in %s", name, userArgon, e.proxyCfg)
	}
	j := i + len(old) + strings.IndexByte(cfg[i+len(old):], '\n')
	cfg = cfg[:i] + old + fmt.Sprintf("%q", hash) + cfg[j:] + extra
	cfgFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	p, err := startProxyProc(e.proxyBin, cfgFile, filepath.Join(dir, "stderr.log"), e.proxyEnv())
	if err != nil {
		return nil, "", err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := dialIMAP(context.Background(), tlsAddr, e.clientTLS, 2*time.Second)
		if err == nil {
			c.close()
			return p, tlsAddr, nil
		}
		select {
		case <-p.exited:
			return nil, "", fmt.Errorf("%s exited during start-up: %v\n%s", name, p.waitErr, p.stderrTail())
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, "", fmt.Errorf("%s did not greet within 20s: %v\n%s", name, err, p.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pluginSection builds the userfile plugin with a user file holding hash
// for dave as "plug", and returns its [[plugin]] entry.
func (e *env) pluginSection(hash string) (string, error) {
	dir := filepath.Join(e.dir, "plugins")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	paths, err := examples.Build(dir)
	if err != nil {
		return "", err
	}
	users, _ := json.Marshal(map[string]any{"users": []map[string]any{
		{"name": userArgon, "logins": []string{userPluginLogin}, "password_hash": hash},
	}})
	usersFile := filepath.Join(dir, "users.json")
	if err := os.WriteFile(usersFile, users, 0o600); err != nil {
		return "", err
	}
	sum, err := plugins.SHA256(paths["userfile"])
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`
# The pluginlogin benchmark: the userfile example plugin knows dave as %q.
[[plugin]]
name = "userfile"
kind = "authenticator"
command = %q
args = ["-users", %q]
sha256 = %q
`, userPluginLogin, paths["userfile"], usersFile, sum), nil
}

// benchPluginLogin measures logins (connect, TLS, LOGIN, LOGOUT, one after
// another, TLS on every hop) of dave through the usual proxy (built-in
// authenticator) and of "plug" through the plugin proxy, interleaved.
func benchPluginLogin(ctx context.Context, e *env, o *options, rep *report) error {
	hash, err := phcHash(proxyPass, pluginArgon2)
	if err != nil {
		return err
	}
	section, err := e.pluginSection(hash)
	if err != nil {
		return err
	}
	bp, baddr, err := e.startVariantProxy("builtin-proxy", hash, "")
	if err != nil {
		return err
	}
	defer bp.stop()
	p, addr, err := e.startVariantProxy("plugin-proxy", hash, section)
	if err != nil {
		return err
	}
	defer p.stop()
	builtin := side{"builtin", baddr, e.clientTLS, userArgon, proxyPass}
	plugin := side{"plugin", addr, e.clientTLS, userPluginLogin, proxyPass}
	var bd, pd []time.Duration
	var cpuProxy, cpuPlugin time.Duration
	measure := func(s side, into *[]time.Duration) func() error {
		return func() error {
			proc := bp
			if s.name == "plugin" {
				proc = p
			}
			cpu0 := proc.cpuTime()
			t0 := time.Now()
			if err := loginLogout(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if into != nil {
				*into = append(*into, time.Since(t0))
				if s.name == "plugin" {
					cpuPlugin += proc.cpuTime() - cpu0
				} else {
					cpuProxy += proc.cpuTime() - cpu0
				}
			}
			return nil
		}
	}
	for i := 0; i < 5; i++ {
		if err := interleave(i, measure(builtin, nil), measure(plugin, nil)); err != nil {
			return err
		}
	}
	for i := 0; i < o.loginN && ctx.Err() == nil; i++ {
		if err := interleave(i, measure(builtin, &bd), measure(plugin, &pd)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	bMed, pMed := percentile(bd, 50), percentile(pd, 50)
	bP99, pP99 := percentile(bd, 99), percentile(pd, 99)
	added := pMed - bMed
	rep.add(row{"pluginlogin (TLS)", fmt.Sprintf("median, built-in vs plugin authenticator, argon2id %s, n=%d", pluginArgon2, len(bd)),
		ms(bMed), ms(pMed), ratio(float64(pMed), float64(bMed)) + fmt.Sprintf(" (%+.2f ms)", float64(added)/1e6),
		"≤ +1 ms", verdict(added <= time.Millisecond)})
	rep.add(row{"pluginlogin (TLS)", "p99", ms(bP99), ms(pP99),
		ratio(float64(pP99), float64(bP99)) + fmt.Sprintf(" (%+.2f ms)", float64(pP99-bP99)/1e6), "-", info})
	rep.note("pluginlogin: the \"direct\" column is the built-in authenticator; proxy CPU per login %.2f ms built-in, %.2f ms with the plugin (the plugin process's own CPU, which computes the hash there, not counted)",
		float64(cpuProxy)/1e6/float64(len(bd)), float64(cpuPlugin)/1e6/float64(len(pd)))
	return nil
}
