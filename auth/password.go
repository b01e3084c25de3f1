package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// ErrMalformedHash means a stored password hash cannot be parsed or asks
// for parameters outside the accepted bounds. It is an internal error:
// the configuration or the store is broken, not the client's password.
var ErrMalformedHash = errors.New("auth: malformed password hash")

// argon2Params are the tunables of an argon2id hash.
type argon2Params struct {
	memory  uint32 // KiB
	time    uint32 // passes
	threads uint8
	keyLen  uint32
}

// defaultParams are what HashPassword uses: 19 MiB, 2 passes, 1 lane, a
// 32-byte key (OWASP's recommended minimum for argon2id). Measured on the
// 2-core machine this project runs on (bench/README.md): 21 ms a check, so
// a login with password and TOTP stays near 30 ms; 64 MiB, t=3, p=4 took
// 74 ms. Every login of a proxy-checked user pays this once, and at most
// GOMAXPROCS checks run at once.
var defaultParams = argon2Params{memory: 19 * 1024, time: 2, threads: 1, keyLen: 32}

// Bounds on the parameters CheckPassword accepts, so that a hash from a
// less trusted source (the store, an import) cannot make one login cost
// unbounded memory or time.
const (
	maxArgon2Memory  = 1 << 20 // KiB, 1 GiB
	maxArgon2Time    = 100
	maxArgon2Threads = 255
	minSaltLen       = 8
	maxSaltLen       = 64
	minKeyLen        = 16
	maxKeyLen        = 128
	saltLen          = 16
	maxBcryptCost    = 16 // about 5 s per check on current hardware
	maxBcryptPass    = 72 // bcrypt ignores bytes beyond this
)

// HashPassword returns an argon2id hash of password as a PHC string,
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, with a random 16-byte
// salt, a 32-byte key, and both in unpadded standard base64.
func HashPassword(password string) (string, error) {
	return hashArgon2(password, defaultParams)
}

// hashArgon2 is HashPassword with chosen parameters; tests use cheap ones.
func hashArgon2(password string, p argon2Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: reading random salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, p.keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash. It accepts argon2id
// PHC strings with any parameters within bounds (memory at most 1 GiB, at
// most 100 passes, at most 255 lanes) and bcrypt hashes ($2a$, $2b$, $2y$,
// cost at most 16). Keys are compared in constant time. A password longer
// than 72 bytes never matches a bcrypt hash, since bcrypt would ignore
// its tail. A malformed or out-of-bounds hash is an error wrapping
// ErrMalformedHash; the error never contains the hash or the password.
func CheckPassword(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return checkArgon2(hash, password)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return checkBcrypt(hash, password)
	default:
		return false, fmt.Errorf("%w: unknown scheme", ErrMalformedHash)
	}
}

func checkArgon2(hash, password string) (bool, error) {
	p, salt, key, err := parseArgon2(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, p.keyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// parseArgon2 parses $argon2id$v=19$m=M,t=T,p=P$SALT$KEY strictly: the
// version is required and must be 19, the three parameters must appear in
// that order with nothing else, and the base64 must be canonical.
func parseArgon2(hash string) (argon2Params, []byte, []byte, error) {
	var p argon2Params
	fields := strings.Split(hash, "$")
	if len(fields) != 6 || fields[0] != "" || fields[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: argon2id: wrong number of fields", ErrMalformedHash)
	}
	if fields[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: argon2id: unsupported version", ErrMalformedHash)
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return p, nil, nil, fmt.Errorf("%w: argon2id: want m, t and p parameters", ErrMalformedHash)
	}
	m, err1 := paramValue(params[0], "m=", 1, maxArgon2Memory)
	t, err2 := paramValue(params[1], "t=", 1, maxArgon2Time)
	th, err3 := paramValue(params[2], "p=", 1, maxArgon2Threads)
	if err := errors.Join(err1, err2, err3); err != nil {
		return p, nil, nil, fmt.Errorf("%w: argon2id: %w", ErrMalformedHash, err)
	}
	if m < 8*th {
		return p, nil, nil, fmt.Errorf("%w: argon2id: memory below 8 KiB per lane", ErrMalformedHash)
	}
	enc := base64.RawStdEncoding.Strict()
	salt, err := enc.DecodeString(fields[4])
	if err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return p, nil, nil, fmt.Errorf("%w: argon2id: bad salt", ErrMalformedHash)
	}
	key, err := enc.DecodeString(fields[5])
	if err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return p, nil, nil, fmt.Errorf("%w: argon2id: bad key", ErrMalformedHash)
	}
	p = argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(th), keyLen: uint32(len(key))}
	return p, salt, key, nil
}

// paramValue parses "name=N" with lo <= N <= hi, decimal digits only.
func paramValue(s, name string, lo, hi uint64) (uint64, error) {
	digits, ok := strings.CutPrefix(s, name)
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, fmt.Errorf("bad parameter %s", strings.TrimSuffix(name, "="))
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("parameter %s out of range [%d, %d]", strings.TrimSuffix(name, "="), lo, hi)
	}
	return n, nil
}

func checkBcrypt(hash, password string) (bool, error) {
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		// bcrypt's own errors quote bytes of the hash: keep them out.
		return false, fmt.Errorf("%w: bcrypt: cannot parse", ErrMalformedHash)
	}
	if cost > maxBcryptCost {
		return false, fmt.Errorf("%w: bcrypt: cost %d above %d", ErrMalformedHash, cost, maxBcryptCost)
	}
	if len(password) > maxBcryptPass {
		// Spend the time anyway, so length is not visible by timing.
		password = password[:maxBcryptPass]
		_ = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		return false, nil
	}
	err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("%w: bcrypt: cannot check", ErrMalformedHash)
	}
}
