package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imapproxy/config"
)

func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("IMAPPROXY_TEST_SECRET", "env-value")
	t.Setenv("IMAPPROXY_TEST_EMPTY", "")
	big := write("big", strings.Repeat("x", maxSecretFile+1))

	tests := []struct {
		name    string
		s       config.Secret
		want    string
		wantErr string // substring of the error; "" means no error
	}{
		{"zero is passthrough", config.Secret{}, "client-pw", ""},
		{"passthrough", config.Secret{Kind: config.SecretPassthrough}, "client-pw", ""},
		{"env", config.Secret{Kind: config.SecretEnv, Ref: "IMAPPROXY_TEST_SECRET"}, "env-value", ""},
		{"env missing", config.Secret{Kind: config.SecretEnv, Ref: "IMAPPROXY_TEST_UNSET"}, "", "IMAPPROXY_TEST_UNSET"},
		{"env empty", config.Secret{Kind: config.SecretEnv, Ref: "IMAPPROXY_TEST_EMPTY"}, "", "IMAPPROXY_TEST_EMPTY"},
		{"env without name", config.Secret{Kind: config.SecretEnv}, "", "variable name"},
		{"file, newline trimmed", config.Secret{Kind: config.SecretFile, Ref: write("nl", "file-value\n")}, "file-value", ""},
		{"file, CRLF trimmed", config.Secret{Kind: config.SecretFile, Ref: write("crlf", "file-value\r\n")}, "file-value", ""},
		{"file, only one newline trimmed", config.Secret{Kind: config.SecretFile, Ref: write("nl2", "file-value\n\n")}, "file-value\n", ""},
		{"file, no newline", config.Secret{Kind: config.SecretFile, Ref: write("raw", " spaced ")}, " spaced ", ""},
		{"file missing", config.Secret{Kind: config.SecretFile, Ref: filepath.Join(dir, "nope")}, "", filepath.Join(dir, "nope")},
		{"file empty", config.Secret{Kind: config.SecretFile, Ref: write("empty", "\n")}, "", "empty"},
		{"file is a directory", config.Secret{Kind: config.SecretFile, Ref: dir}, "", dir},
		{"file too big", config.Secret{Kind: config.SecretFile, Ref: big}, "", "larger than"},
		{"file without path", config.Secret{Kind: config.SecretFile}, "", "without a path"},
		{"unknown kind", config.Secret{Kind: "vault", Ref: "x"}, "", "vault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveSecret(tt.s, "client-pw")
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ResolveSecret = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || got != "" || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ResolveSecret = %q, %v; want an error mentioning %q", got, err, tt.wantErr)
			}
			for _, secret := range []string{"client-pw", "env-value", "xxxxxxxx"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q contains a secret value", err)
				}
			}
			if strings.Count(err.Error(), dir) > 1 {
				t.Fatalf("error %q repeats the path", err)
			}
		})
	}
}

func TestResolveSecretMissingFileIsNotExist(t *testing.T) {
	_, err := ResolveSecret(config.Secret{Kind: config.SecretFile, Ref: filepath.Join(t.TempDir(), "nope")}, "")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v; want one matching fs.ErrNotExist", err)
	}
}
