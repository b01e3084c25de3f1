package auth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"imapproxy/config"
)

// maxSecretFile bounds the size of a secret file; a password is far
// shorter, and a mistaken path (a log, a device) must not be read whole.
const maxSecretFile = 64 << 10

// ResolveSecret returns the password that s refers to: clientPassword for
// "passthrough" (and for the zero Secret), the value of an environment
// variable for "env", or a file's contents, with one trailing newline
// ("\n" or "\r\n") removed, for "file". A missing or empty variable or
// file is an error. Errors name the variable or path, never a value.
func ResolveSecret(s config.Secret, clientPassword string) (string, error) {
	switch s.Kind {
	case "", config.SecretPassthrough:
		return clientPassword, nil
	case config.SecretEnv:
		if s.Ref == "" {
			return "", errors.New("auth: env secret without a variable name")
		}
		v, ok := os.LookupEnv(s.Ref)
		if !ok {
			return "", fmt.Errorf("auth: environment variable %s is not set", s.Ref)
		}
		if v == "" {
			return "", fmt.Errorf("auth: environment variable %s is empty", s.Ref)
		}
		return v, nil
	case config.SecretFile:
		return readSecretFile(s.Ref)
	default:
		return "", fmt.Errorf("auth: unknown secret kind %q", s.Kind)
	}
}

func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("auth: file secret without a path")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("auth: secret file %s: %w", path, pathlessError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("auth: secret file %s: %w", path, pathlessError(err))
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("auth: secret file %s: larger than %d bytes", path, maxSecretFile)
	}
	v := string(b)
	if t, ok := strings.CutSuffix(v, "\n"); ok {
		v = strings.TrimSuffix(t, "\r")
	}
	if v == "" {
		return "", fmt.Errorf("auth: secret file %s is empty", path)
	}
	return v, nil
}

// pathlessError strips the *fs.PathError wrapper, whose text repeats the
// path, and keeps the cause (errors.Is still works on it).
func pathlessError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
