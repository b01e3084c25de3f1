package auth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"imapproxy/config"
)

// TestConfigAndAuthAgreeOnHashes checks that a hash config validation
// accepts is one CheckPassword can use, and the other way round: config
// cannot import auth, so the two keep their own parsers.
func TestConfigAndAuthAgreeOnHashes(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	const salt, key = "2UAGrridhke77taNMhWNhA", "IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U"
	bcryptOK := "$2b$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
	for _, h := range []string{
		good,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=1048576,t=100,p=255$" + salt + "$" + key,
		"$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=101,p=1$" + salt + "$" + key,
		"$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:10],
		"$argon2id$v=19$m=64,t=1,p=1$AAAA$" + key,
		"$argon2id$v=18$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + key,
		bcryptOK,
		"$2b$16$" + bcryptOK[7:],
		"$2b$17$" + bcryptOK[7:],
	} {
		cfg := &config.Config{
			Listen:    []config.Listener{{Address: "127.0.0.1:143", TLS: config.TLSNone, AllowCleartextAuth: true}},
			Upstreams: []config.Upstream{{Name: "u", Address: "127.0.0.1:993"}},
			Users:     []config.User{{Name: "x", PasswordHash: h, Upstream: "u"}},
		}
		cfgErr := cfg.Validate()
		authErr := authParses(h)
		if (cfgErr == nil) != (authErr == nil) {
			t.Errorf("%s: config says %v, auth says %v", h, cfgErr, authErr)
		}
	}
}

// authParses runs CheckPassword's parsing without the costly hashing.
func authParses(h string) error {
	if strings.HasPrefix(h, "$argon2id$") {
		_, _, _, err := parseArgon2(h)
		return err
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil || cost > maxBcryptCost {
		return ErrMalformedHash
	}
	return nil
}
