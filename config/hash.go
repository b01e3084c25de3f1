package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// checkPasswordHash checks the form of an argon2id PHC string
// ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash") or a bcrypt hash
// ("$2b$12$..."). It checks the form only: nothing is hashed here. Messages
// never repeat the salt or the hash.
func checkPasswordHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		return checkBcrypt(h)
	}
	return errors.New(`is neither an argon2id hash ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") ` +
		`nor a bcrypt hash ("$2a$", "$2b$" or "$2y$")`)
}

// Bounds on hash parameters, the same as auth.CheckPassword's.
const (
	maxArgon2Memory = 1 << 20 // KiB
	maxArgon2Time   = 100
	maxBcryptCost   = 16
)

// argon2Params are the cost parameters of an argon2id hash.
type argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen int // bytes
	KeyLen  int // bytes
}

func parseArgon2id(h string) (argon2Params, error) {
	var p argon2Params
	bad := func(format string, args ...any) (argon2Params, error) {
		return argon2Params{}, fmt.Errorf("argon2id hash: "+format, args...)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 {
		return bad(`want 5 fields "$argon2id$v=19$m=...,t=...,p=...$salt$hash", got %d`, len(parts)-1)
	}
	if parts[2] != "v=19" {
		return bad("version must be v=19")
	}
	// The same bounds as auth.CheckPassword (which this package cannot
	// import): a hash that passes here also works at login.
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return bad("want the parameters m, t and p, in that order")
	}
	for i, name := range []string{"m", "t", "p"} {
		k, val, _ := strings.Cut(params[i], "=")
		n, err := strconv.ParseUint(val, 10, 32)
		if k != name || err != nil || n == 0 {
			return bad("want the parameters m, t and p, in that order; got %s", quoteShort(params[i]))
		}
		switch name {
		case "m":
			if n > maxArgon2Memory {
				return bad("m=%d is more than %d (1 GiB)", n, maxArgon2Memory)
			}
			p.Memory = uint32(n)
		case "t":
			if n > maxArgon2Time {
				return bad("t=%d is more than %d", n, maxArgon2Time)
			}
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return bad("p=%d is more than 255", n)
			}
			p.Threads = uint8(n)
		}
	}
	if p.Memory < 8*uint32(p.Threads) {
		return bad("m=%d is less than 8*p", p.Memory)
	}
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return bad("the salt must be 8 to 64 bytes in unpadded base64")
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return bad("the hash must be 16 to 128 bytes in unpadded base64")
	}
	p.SaltLen, p.KeyLen = len(salt), len(key)
	return p, nil
}

// checkBcrypt checks "$2b$" + two-digit cost + "$" + 53 characters of
// bcrypt's base64 alphabet (22 of salt, 31 of hash).
func checkBcrypt(h string) error {
	if len(h) != 60 || h[6] != '$' {
		return errors.New(`bcrypt hash: want 60 characters like "$2b$12$" followed by 53 more`)
	}
	cost, err := strconv.Atoi(h[4:6])
	if err != nil || cost < 4 || cost > maxBcryptCost {
		return fmt.Errorf("bcrypt hash: the cost must be 04 to %d", maxBcryptCost)
	}
	for _, c := range h[7:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '/') {
			return errors.New("bcrypt hash: salt and hash must use bcrypt's base64 alphabet")
		}
	}
	return nil
}
