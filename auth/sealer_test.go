package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestSealer(t *testing.T) (*Sealer, []byte) {
	t.Helper()
	text, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

func TestSealerRoundTrip(t *testing.T) {
	s, _ := newTestSealer(t)
	for _, tt := range []struct {
		name      string
		plaintext []byte
		purpose   string
	}{
		{"empty", nil, "totp:alice"},
		{"totp secret", []byte("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "totp:alice"},
		{"password", []byte("hunter2"), "upstream-password:bob"},
		{"binary, long", bytes.Repeat([]byte{0, 1, 2, 255}, 4096), "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := s.Seal(tt.plaintext, tt.purpose)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed) != len(tt.plaintext)+sealOverhead || sealed[0] != sealVersion {
				t.Fatalf("sealed is %d bytes, version %d; want %d, %d", len(sealed), sealed[0], len(tt.plaintext)+sealOverhead, sealVersion)
			}
			if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext) {
				t.Fatal("sealed data contains the plaintext")
			}
			again, err := s.Seal(tt.plaintext, tt.purpose)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(sealed, again) {
				t.Fatal("two seals of the same plaintext are equal")
			}
			got, err := s.Open(sealed, tt.purpose)
			if err != nil || !bytes.Equal(got, tt.plaintext) {
				t.Fatalf("Open = %q, %v; want %q", got, err, tt.plaintext)
			}
		})
	}
}

func TestSealerRefuses(t *testing.T) {
	s, _ := newTestSealer(t)
	other, _ := newTestSealer(t)
	sealed, err := s.Seal([]byte("the secret"), "totp:alice")
	if err != nil {
		t.Fatal(err)
	}
	modified := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(sealed))
	}
	tests := []struct {
		name    string
		s       *Sealer
		sealed  []byte
		purpose string
	}{
		{"wrong key", other, sealed, "totp:alice"},
		{"wrong user", s, sealed, "totp:bob"},
		{"wrong use", s, sealed, "upstream-password:alice"},
		{"truncated", s, sealed[:len(sealed)-1], "totp:alice"},
		{"too short", s, sealed[:sealOverhead-1], "totp:alice"},
		{"empty", s, nil, "totp:alice"},
		{"unknown version", s, modified(func(b []byte) []byte { b[0] = 2; return b }), "totp:alice"},
		{"extended", s, append(bytes.Clone(sealed), 0), "totp:alice"},
	}
	// Every single flipped bit anywhere must be detected.
	for i := range sealed {
		tests = append(tests, struct {
			name    string
			s       *Sealer
			sealed  []byte
			purpose string
		}{"tampered byte", s, modified(func(b []byte) []byte { b[i] ^= 0x10; return b }), "totp:alice"})
	}
	for _, tt := range tests {
		got, err := tt.s.Open(tt.sealed, tt.purpose)
		if !errors.Is(err, ErrWrongKey) || got != nil {
			t.Fatalf("%s: Open = %q, %v; want nil, ErrWrongKey", tt.name, got, err)
		}
	}
}

func TestSealerEmptyPurpose(t *testing.T) {
	s, _ := newTestSealer(t)
	if _, err := s.Seal([]byte("x"), ""); err == nil {
		t.Fatal("Seal with an empty purpose succeeded")
	}
	sealed, _ := s.Seal([]byte("x"), "p")
	if _, err := s.Open(sealed, ""); err == nil {
		t.Fatal("Open with an empty purpose succeeded")
	}
}

func TestNewSealerKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Fatalf("NewSealer accepted a %d-byte key", n)
		}
	}
}

func TestParseKey(t *testing.T) {
	good, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != 44 {
		t.Fatalf("GenerateKey = %d characters; want 44", len(good))
	}
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name, text string
		ok         bool
	}{
		{"generated", good, true},
		{"surrounding whitespace", "  " + good + "\n", true},
		{"empty", "", false},
		{"blank", " \n", false},
		{"not base64", "!!!!" + good[4:], false},
		{"url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 16))), false},
		{"16 bytes", short, false},
		{"raw hex", strings.Repeat("ab", 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParseKey(tt.text)
			if tt.ok {
				if err != nil || len(key) != KeySize {
					t.Fatalf("ParseKey = %d bytes, %v; want %d", len(key), err, KeySize)
				}
				return
			}
			if err == nil {
				t.Fatal("ParseKey succeeded")
			}
			if trimmed := strings.TrimSpace(tt.text); trimmed != "" && strings.Contains(err.Error(), trimmed[:4]) {
				t.Fatalf("error %q shows the key", err)
			}
		})
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	text, _ := GenerateKey()
	want, _ := ParseKey(text)
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("IMAPPROXY_TEST_KEY", text)
	t.Setenv("IMAPPROXY_TEST_BADKEY", "c2hvcnQ=")
	tests := []struct {
		name    string
		ref     string
		wantErr string // substring; "" means success
	}{
		{"file 0600", "file:" + write("k600", text+"\n", 0o600), ""},
		{"file 0400", "file:" + write("k400", text, 0o400), ""},
		{"file 0640", "file:" + write("k640", text, 0o640), "group or others"},
		{"file 0604", "file:" + write("k604", text, 0o604), "group or others"},
		{"file 0660", "file:" + write("k660", text, 0o660), "chmod 600"},
		{"file garbage", "file:" + write("bad", "not a key", 0o600), "base64"},
		{"file missing", "file:" + filepath.Join(dir, "nope"), "nope"},
		{"file is a directory", "file:" + dir, "regular"},
		{"env", "env:IMAPPROXY_TEST_KEY", ""},
		{"env unset", "env:IMAPPROXY_TEST_UNSET", "IMAPPROXY_TEST_UNSET"},
		{"env bad", "env:IMAPPROXY_TEST_BADKEY", "IMAPPROXY_TEST_BADKEY"},
		{"no kind", text, "file:PATH"},
		{"unknown kind", "vault:" + text, "file:PATH"},
		{"empty file path", "file:", "file:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := LoadKey(tt.ref)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(key, want) {
					t.Fatalf("LoadKey = %x, %v; want the key", key, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("LoadKey error = %v; want one mentioning %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), text[:8]) {
				t.Fatalf("error %q shows the key", err)
			}
		})
	}
	if _, err := LoadKey("file:" + filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing key file: err = %v; want fs.ErrNotExist", err)
	}
}
