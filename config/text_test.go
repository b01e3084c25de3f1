package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSecret(t *testing.T) {
	tests := []struct {
		in      string
		want    Secret
		wantErr string
	}{
		{in: "passthrough", want: Secret{Kind: SecretPassthrough}},
		{in: "env:IMAP_PASSWORD", want: Secret{Kind: SecretEnv, Ref: "IMAP_PASSWORD"}},
		{in: "env:_x9", want: Secret{Kind: SecretEnv, Ref: "_x9"}},
		{in: "file:/etc/imapproxy/secret", want: Secret{Kind: SecretFile, Ref: "/etc/imapproxy/secret"}},
		{in: "file:relative/path with space", want: Secret{Kind: SecretFile, Ref: "relative/path with space"}},
		{in: "store", want: Secret{Kind: SecretStore}},
		{in: "oauth2:store", want: Secret{Kind: SecretStore, XOAUTH2: true}},
		{in: "oauth2:env:TOKEN", want: Secret{Kind: SecretEnv, Ref: "TOKEN", XOAUTH2: true}},
		{in: "oauth2:file:/run/token", want: Secret{Kind: SecretFile, Ref: "/run/token", XOAUTH2: true}},
		{in: "oauth2:passthrough", wantErr: `a client's own token passes through`},
		{in: "store:x", wantErr: `must be "passthrough"`},
		{in: "hunter2", wantErr: `must be "passthrough", "env:NAME", "file:PATH" or "store"`},
		{in: "", wantErr: `must be "passthrough"`},
		{in: "Passthrough", wantErr: `must be "passthrough"`},
		{in: "env:", wantErr: "env:NAME needs a variable name"},
		{in: "env:9LIVES", wantErr: "env:NAME needs a variable name"},
		{in: "env:MY-PASS", wantErr: "env:NAME needs a variable name"},
		{in: "file:", wantErr: "file:PATH needs a path"},
		{in: "vault:secret/x", wantErr: `must be "passthrough"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSecret(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSecret(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if len(tt.in) > 5 && strings.Contains(err.Error(), tt.in) {
					t.Errorf("error %q repeats the input", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSecret(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			text, err := got.MarshalText()
			if err != nil || string(text) != tt.in || got.String() != tt.in {
				t.Errorf("MarshalText = %q, %v; String = %q; want %q", text, err, got.String(), tt.in)
			}
			var back Secret
			if err := back.UnmarshalText(text); err != nil || back != got {
				t.Errorf("round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestSecretString(t *testing.T) {
	tests := []struct {
		s    Secret
		want string
	}{
		{Secret{}, "passthrough"},
		{Secret{Kind: SecretEnv, Ref: "X"}, "env:X"},
		// Malformed secrets built in code print nothing of their contents.
		{Secret{Kind: "literal", Ref: "hunter2"}, "(invalid secret)"},
		{Secret{Ref: "hunter2"}, "(invalid secret)"},
		{Secret{Kind: SecretPassthrough, Ref: "hunter2"}, "(invalid secret)"},
		{Secret{Kind: SecretEnv, Ref: "not a name hunter2"}, "(invalid secret)"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.s, got, tt.want)
		}
		if _, err := tt.s.MarshalText(); (err != nil) != (tt.want == "(invalid secret)") {
			t.Errorf("%#v.MarshalText() error = %v", tt.s, err)
		}
	}
	if !(Secret{}).IsPassthrough() || (Secret{Kind: SecretFile, Ref: "x"}).IsPassthrough() {
		t.Error("IsPassthrough is wrong")
	}
}

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0s", want: 0},
		{in: "-1s", wantErr: `"-1s" is negative`},
		{in: "5", wantErr: `"5" is not a duration`},
		{in: "soon", wantErr: `"soon" is not a duration`},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.D() != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tt.in, d, err, tt.want)
		}
		if text, _ := d.MarshalText(); string(text) != tt.want.String() {
			t.Errorf("MarshalText = %q", text)
		}
	}
}

func TestEnumText(t *testing.T) {
	var m TLSMode
	var mode Mode
	var v Verify
	tests := []struct {
		u       interface{ UnmarshalText([]byte) error }
		in      string
		wantErr string
	}{
		{&m, "implicit", ""},
		{&m, "starttls", ""},
		{&m, "none", ""},
		{&m, "tlss", `"tlss" is not one of implicit, starttls, none`},
		{&m, "IMPLICIT", `"IMPLICIT" is not one of`},
		{&mode, "route", ""},
		{&mode, "merge", ""},
		{&mode, "Merge", `"Merge" is not one of route, merge`},
		{&v, "proxy", ""},
		{&v, "upstream", ""},
		{&v, "both", `"both" is not one of upstream, proxy`},
	}
	for _, tt := range tests {
		err := tt.u.UnmarshalText([]byte(tt.in))
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%T.UnmarshalText(%q) = %v, want %q", tt.u, tt.in, err, tt.wantErr)
		}
	}
	if m != TLSNone || mode != ModeMerge || v != VerifyUpstream {
		t.Errorf("values = %q %q %q", m, mode, v)
	}
}
