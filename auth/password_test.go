package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPasswordDefault(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("HashPassword = %q, not the expected PHC form", h)
	}
	if ok, err := CheckPassword(h, "correct horse"); !ok || err != nil {
		t.Fatalf("CheckPassword(right) = %v, %v", ok, err)
	}
}

func TestHashPasswordSalted(t *testing.T) {
	a, b := cheapHash(t, "pw"), cheapHash(t, "pw")
	if a == b {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestCheckPassword(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bcrypt2a := string(bc) // Go writes $2a$
	long := strings.Repeat("p", 72)
	bcLong, err := bcrypt.GenerateFromPassword([]byte(long), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, password string
		want                 bool
	}{
		{"argon2id right", cheapHash(t, "secret"), "secret", true},
		{"argon2id wrong", cheapHash(t, "secret"), "Secret", false},
		{"argon2id empty password", cheapHash(t, "secret"), "", false},
		{"argon2id unicode", cheapHash(t, "pässwörd"), "pässwörd", true},
		{"argon2id prefix of password", cheapHash(t, "secret"), "secre", false},
		{"argon2id other params", "$argon2id$v=19$m=32,t=2,p=2$" + strings.TrimPrefix(cheapHash(t, "x"), "$argon2id$v=19$m=64,t=1,p=1$"), "x", false},
		{"bcrypt 2a right", bcrypt2a, "secret", true},
		{"bcrypt 2a wrong", bcrypt2a, "secreT", false},
		{"bcrypt 2b right", "$2b$" + bcrypt2a[4:], "secret", true},
		{"bcrypt 2y right", "$2y$" + bcrypt2a[4:], "secret", true},
		// Openwall crypt_blowfish test vector.
		{"bcrypt known vector", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", true},
		{"bcrypt 72 bytes", string(bcLong), long, true},
		{"bcrypt over 72 bytes never matches", string(bcLong), long + "tail", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckPassword(tt.hash, tt.password)
			if err != nil || got != tt.want {
				t.Fatalf("CheckPassword = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	const salt = "c29tZXNhbHRzb21lc2FsdA"                     // 16 bytes
	const key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U" // 32 bytes
	ok := func(params string) string { return "$argon2id$v=19$" + params + "$" + salt + "$" + key }
	tests := []struct{ name, hash string }{
		{"empty", ""},
		{"plain text", "secret"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"argon2d", "$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"upper case scheme", "$ARGON2ID$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"no version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key},
		{"version 16", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"extra field", ok("m=64,t=1,p=1") + "$x"},
		{"missing key", "$argon2id$v=19$m=64,t=1,p=1$" + salt},
		{"params out of order", ok("t=1,m=64,p=1")},
		{"extra param", ok("m=64,t=1,p=1,keyid=x")},
		{"missing param", ok("m=64,t=1")},
		{"m zero", ok("m=0,t=1,p=1")},
		{"m above 1 GiB", ok("m=1048577,t=1,p=1")},
		{"m overflows uint32", ok("m=4294967296,t=1,p=1")},
		{"m below 8 per lane", ok("m=15,t=1,p=2")},
		{"t zero", ok("m=64,t=0,p=1")},
		{"t above 100", ok("m=64,t=101,p=1")},
		{"p zero", ok("m=64,t=1,p=0")},
		{"p above 255", ok("m=4096,t=1,p=256")},
		{"negative", ok("m=-64,t=1,p=1")},
		{"plus sign", ok("m=+64,t=1,p=1")},
		{"leading zero", ok("m=064,t=1,p=1")},
		{"hex", ok("m=0x40,t=1,p=1")},
		{"space", ok("m=64, t=1,p=1")},
		{"salt too short", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key},
		{"salt not base64", "$argon2id$v=19$m=64,t=1,p=1$!!!!!!!!!!!!!!!!!!!!!!$" + key},
		{"salt padded", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"key too short", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$a2V5"},
		{"key too long", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.Repeat("A", 176)},
		{"bcrypt 2x", "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
		{"bcrypt 2", "$2$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
		{"bcrypt truncated", "$2b$05$CCCCCCCCCCCCCCCC"},
		{"bcrypt bad cost", "$2b$xx$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
		{"bcrypt cost too high", "$2b$17$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
		{"bcrypt cost 31", "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckPassword(tt.hash, "hunter2")
			if got || !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("CheckPassword = %v, %v; want false, ErrMalformedHash", got, err)
			}
			if strings.Contains(err.Error(), "hunter2") || (len(tt.hash) > 10 && strings.Contains(err.Error(), tt.hash)) {
				t.Fatalf("error %q leaks its input", err)
			}
		})
	}
}

// TestArgon2Bounds checks the accepted extremes by parsing only: hashing
// with m = 1 GiB in a test would be its own denial of service.
func TestArgon2Bounds(t *testing.T) {
	const tail = "$c29tZXNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	tests := []struct {
		params string
		want   argon2Params
	}{
		{"m=1048576,t=100,p=255", argon2Params{1 << 20, 100, 255, 32}},
		{"m=8,t=1,p=1", argon2Params{8, 1, 1, 32}},
		{"m=2040,t=1,p=255", argon2Params{2040, 1, 255, 32}},
	}
	for _, tt := range tests {
		p, salt, key, err := parseArgon2("$argon2id$v=19$" + tt.params + tail)
		if err != nil || p != tt.want || len(salt) != 8 || len(key) != 32 {
			t.Errorf("parseArgon2(%s) = %+v, %d-byte salt, %d-byte key, %v; want %+v", tt.params, p, len(salt), len(key), err, tt.want)
		}
	}
}
