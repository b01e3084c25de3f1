package auth

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length, in bytes, of a Sealer key.
const KeySize = chacha20poly1305.KeySize

// sealVersion is the first byte of every sealed blob. A new format (another
// cipher, a key ID) gets a new version so that old blobs stay readable.
const sealVersion = 1

// sealOverhead is what Seal adds to a plaintext: version, nonce and tag.
const sealOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// maxKeyFile bounds the key file that LoadKey reads: a key is 44 bytes of
// base64, and a mistaken path must not be read whole.
const maxKeyFile = 4 << 10

// ErrWrongKey means sealed data did not open: it was sealed with another
// key or for another purpose, or it was altered. The three cannot be told
// apart, by design of the AEAD.
var ErrWrongKey = errors.New("auth: sealed data does not open with this key and purpose")

// A Sealer encrypts secrets at rest (TOTP secrets, stored upstream
// passwords) with XChaCha20-Poly1305 under a server key. A blob is bound to
// its purpose, such as "totp:alice": it opens only with the same purpose, so
// that it cannot be moved to another user or use. A Sealer is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for key, which must be KeySize (32) bytes, as
// returned by ParseKey or LoadKey.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("auth: sealing key is %d bytes; want %d", len(key), KeySize)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("auth: sealing key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext for purpose, which must not be empty. The result
// is a version byte, a random 24-byte nonce and the ciphertext with its
// 16-byte tag. Sealing the same plaintext twice gives different results.
func (s *Sealer) Seal(plaintext []byte, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("auth: seal: empty purpose")
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, len(plaintext)+sealOverhead)
	out[0] = sealVersion
	nonce := out[1:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("auth: seal: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, []byte(purpose)), nil
}

// Open decrypts what Seal returned for the same purpose. Data sealed with
// another key or purpose, truncated or altered, gives an error wrapping
// ErrWrongKey; there is never a plaintext fallback.
func (s *Sealer) Open(sealed []byte, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("auth: open: empty purpose")
	}
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("auth: open: sealed data too short: %w", ErrWrongKey)
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("auth: open: unknown sealed format %d: %w", sealed[0], ErrWrongKey)
	}
	nonce := sealed[1 : 1+chacha20poly1305.NonceSizeX]
	plaintext, err := s.aead.Open(nil, nonce, sealed[1+chacha20poly1305.NonceSizeX:], []byte(purpose))
	if err != nil {
		return nil, fmt.Errorf("auth: open: %w", ErrWrongKey)
	}
	return plaintext, nil
}

// GenerateKey returns a new random sealing key in the text form that
// ParseKey reads: standard base64 of KeySize bytes (`imapproxy keygen`).
func GenerateKey() (string, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("auth: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// ParseKey decodes a key written by GenerateKey: standard base64 of KeySize
// bytes, surrounding whitespace ignored. Its errors never contain the text.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("auth: sealing key is empty")
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		// The decoder's error holds only an offset, but saying less is safer.
		return nil, errors.New("auth: sealing key is not valid standard base64")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("auth: sealing key decodes to %d bytes; want %d (use imapproxy keygen)", len(key), KeySize)
	}
	return key, nil
}

// LoadKey reads the key that ref points to: "file:PATH", a file holding
// the base64 key, which must not be accessible to group or others (mode
// 0600 or stricter), or "env:NAME", an environment variable holding it.
// Errors name the file or variable, never the key.
func LoadKey(ref string) ([]byte, error) {
	kind, arg, ok := strings.Cut(ref, ":")
	switch {
	case ok && kind == "file" && arg != "":
		return loadKeyFile(arg)
	case ok && kind == "env" && arg != "":
		v, set := os.LookupEnv(arg)
		if !set {
			return nil, fmt.Errorf("auth: sealing key: environment variable %s is not set", arg)
		}
		key, err := ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("auth: environment variable %s: %w", arg, err)
		}
		return key, nil
	default:
		// ref itself is not printed: it may be a key pasted in by mistake.
		return nil, errors.New(`auth: sealing key reference must be "file:PATH" or "env:NAME"`)
	}
}

func loadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: key file %s: %w", path, pathlessError(err))
	}
	defer f.Close()
	// Stat the open file, not the path, so that the checked file is the
	// read one.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: key file %s: %w", path, pathlessError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("auth: key file %s is accessible to group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("auth: key file %s: %w", path, pathlessError(err))
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("auth: key file %s: larger than %d bytes", path, maxKeyFile)
	}
	key, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("auth: key file %s: %w", path, err)
	}
	return key, nil
}
