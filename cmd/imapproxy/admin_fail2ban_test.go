package main

import (
	"bufio"
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"imapproxy/config"
)

// fail2banDefinition reads the [Definition] section of a fail2ban filter:
// continuation lines, "%(name)s" references to other keys of the section
// and "%%" as fail2ban's ConfigParser reads them.
func fail2banDefinition(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw := map[string]string{}
	section, key := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, ";"):
			key = ""
		case strings.HasPrefix(trimmed, "["):
			section, key = strings.Trim(trimmed, "[]"), ""
		case line[0] == ' ' || line[0] == '\t':
			if key == "" {
				t.Fatalf("%s: continuation line without a key: %q", path, line)
			}
			raw[key] += "\n" + trimmed
		case section == "Definition":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a key = value line: %q", path, line)
			}
			key = strings.TrimSpace(k)
			raw[key] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`%\(([^)]+)\)s|%%`)
	var expand func(string, int) string
	expand = func(s string, depth int) string {
		if depth > 10 {
			t.Fatalf("%s: interpolation too deep", path)
		}
		return ref.ReplaceAllStringFunc(s, func(m string) string {
			if m == "%%" {
				return "%"
			}
			name := m[2 : len(m)-2]
			v, ok := raw[name]
			if !ok {
				t.Fatalf("%s: %%(%s)s is not defined", path, name)
			}
			return expand(v, depth+1)
		})
	}
	out := map[string]string{}
	for k, v := range raw {
		out[k] = expand(v, 0)
	}
	return out
}

// fail2banRegexps compiles the lines of a failregex or ignoreregex, with
// fail2ban's <HOST> as a Go group named host.
func fail2banRegexps(t *testing.T, value string) []*regexp.Regexp {
	t.Helper()
	var out []*regexp.Regexp
	for _, line := range strings.Split(value, "\n") {
		if line == "" {
			continue
		}
		expr := strings.ReplaceAll(line, "<HOST>", `(?P<host>[0-9A-Fa-f:.]+)`)
		re, err := regexp.Compile(expr)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, re)
	}
	if len(out) == 0 {
		t.Fatal("no expressions")
	}
	return out
}

// fail2banMatch returns the host that a line is banned for, "" when it is
// not matched or is ignored.
func fail2banMatch(fail, ignore []*regexp.Regexp, line string) string {
	for _, re := range ignore {
		if re.MatchString(line) {
			return ""
		}
	}
	for _, re := range fail {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[re.SubexpIndex("host")]
		}
	}
	return ""
}

// TestFail2banFilter checks the filter in contrib against lines made by
// the proxy's loggers with the attributes of its "login failed" line.
func TestFail2banFilter(t *testing.T) {
	def := fail2banDefinition(t, "../../contrib/fail2ban/imapproxy.conf")
	fail := fail2banRegexps(t, def["failregex"])
	ignore := fail2banRegexps(t, def["ignoreregex"])
	if !strings.Contains(def["failregex"], "<HOST>") {
		t.Fatal("failregex without <HOST>")
	}

	users := []string{
		"alice", "Alice@Example.COM", "", "a b", "jörg", `back\slash`, "tab\there",
		`evil remote=6.6.6.6`, `x" remote=6.6.6.6 y="`, "x\nremote=6.6.6.6",
		`msg="login failed" user=x remote=6.6.6.6`, `","remote":"6.6.6.6`,
		`{"msg":"login failed","user":"x","remote":"6.6.6.6"}`,
		`reason="auth error"`, `"reason":"auth error"`,
	}
	ips := []string{"203.0.113.7", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1"}
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := newLogger(config.Log{Format: format}, &buf)
		logLine := func(msg string, args ...any) string {
			buf.Reset()
			log.Warn(msg, args...)
			return strings.TrimSuffix(buf.String(), "\n")
		}
		for _, user := range users {
			for _, ip := range ips {
				line := logLine("login failed", "user", user, "remote", ip, "mechanism", "plain", "reason", "bad credentials")
				if got := fail2banMatch(fail, ignore, line); got != ip {
					t.Errorf("%s: got host %q, want %q from\n%s", format, got, ip, line)
				}
			}
		}
		for _, reason := range []string{"auth error", "upstream unavailable", "upstream auth", "upstream secret"} {
			line := logLine("login failed", "user", "alice", "remote", "203.0.113.7", "mechanism", "login", "reason", reason)
			if got := fail2banMatch(fail, ignore, line); got != "" {
				t.Errorf("%s: the proxy's own failure banned %q:\n%s", format, got, line)
			}
		}
		for _, reason := range []string{"code required", "locked", "no route", "rejected by upstream", `app password "phone" expired`} {
			line := logLine("login failed", "user", "alice", "remote", "203.0.113.7", "mechanism", "login", "reason", reason)
			if got := fail2banMatch(fail, ignore, line); got != "203.0.113.7" {
				t.Errorf("%s: reason %q not banned:\n%s", format, reason, line)
			}
		}
		// Other lines that carry a client's user name never match.
		for _, user := range users {
			line := logLine("authentication error", "user", user, "err", "store: closed")
			if got := fail2banMatch(fail, ignore, line); got != "" {
				t.Errorf("%s: banned %q for\n%s", format, got, line)
			}
		}
		if got := fail2banMatch(fail, ignore, logLine("login failed", "user", "x", "remote", "invalid IP", "mechanism", "login", "reason", "bad credentials")); got != "" {
			t.Errorf("%s: banned %q without an address", format, got)
		}
	}
}
