package auth

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: the defaults that every authenticator app supports
// (RFC 6238 with HMAC-SHA1, 6 digits, 30-second steps, 20-byte secrets).
const (
	TOTPDigits     = 6
	TOTPPeriod     = 30 * time.Second
	totpSecretSize = 20
	// totpSkew is how many steps before and after the current one are
	// accepted, for clocks that drift and codes typed near a boundary.
	totpSkew = 1
)

// NewTOTPSecret returns a new random TOTP secret, in unpadded base32 as
// apps and MatchTOTP take it, and the otpauth:// URI that enrols it (shown
// as a QR code). issuer and account label the entry in the app; both are
// required. The secret must be stored sealed (Sealer), never in clear.
func NewTOTPSecret(issuer, account string) (secret, uri string, err error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(TOTPPeriod / time.Second),
		SecretSize:  totpSecretSize,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", "", fmt.Errorf("auth: new TOTP secret: %w", err)
	}
	return key.Secret(), key.URL(), nil
}

// TOTPStep returns the RFC 6238 time step of t: the number of whole
// periods since the Unix epoch.
func TOTPStep(t time.Time) int64 {
	s := t.Unix()
	p := int64(TOTPPeriod / time.Second)
	if s < 0 {
		return (s - p + 1) / p // floor, not truncation
	}
	return s / p
}

// MatchTOTP reports whether code is the TOTP code of secret (base32) at
// now, or one step before or after it, and which step matched, preferring
// the current step, then the previous, then the next. Codes that are not
// exactly six ASCII digits never match, nor does any code for a secret
// that is not valid base32.
//
// MatchTOTP does not prevent replay: the caller must record the matched
// step per user and refuse any step not greater than the last one used
// (allowing, if it wishes, the same step again for the same client within
// a grace window).
func MatchTOTP(secret, code string, now time.Time) (step int64, ok bool) {
	if !isDigits(code, TOTPDigits) {
		return 0, false
	}
	cur := TOTPStep(now)
	// Every candidate is computed and compared, so that the time taken
	// does not tell which step, if any, matched.
	steps := make([]int64, 0, 1+2*totpSkew)
	steps = append(steps, cur)
	for k := int64(1); k <= totpSkew; k++ {
		steps = append(steps, cur-k, cur+k)
	}
	found := false
	for _, s := range steps {
		want, err := totpCode(secret, s)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && !found {
			step, found = s, true
		}
	}
	if !found {
		return 0, false
	}
	return step, true
}

// totpCode returns the code of secret at step.
func totpCode(secret string, step int64) (string, error) {
	if step < 0 {
		return "", fmt.Errorf("auth: TOTP step %d before the epoch", step)
	}
	return hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
}

// TOTPCandidate is one way to read a password that carries a TOTP code.
type TOTPCandidate struct {
	Password string // the password proper, never empty
	Code     string // six ASCII digits
}

// SplitTOTP reads a password with a TOTP code appended, as users type it
// where a client has a single password field. The code is always the LAST
// six characters, which must be ASCII digits; otherwise there are no
// candidates. A colon may separate the two: for "secret:123456" the first
// candidate is {"secret", "123456"} and the second {"secret:", "123456"},
// for a password that itself ends in a colon. For "secret123456" the only
// candidate is {"secret", "123456"}. A password ending in digits is
// ambiguous by nature and is read the same way: "pass99" + "123456" is
// "pass99123456" and gives {"pass99", "123456"}. No candidate has an
// empty password.
//
// All candidates carry the same code, so the caller checks the code once
// and stops at the first candidate whose password verifies. Each extra
// candidate costs a password check (or, when the upstream verifies, an
// upstream login): a caller may limit itself to the first.
func SplitTOTP(password string) []TOTPCandidate {
	if len(password) <= TOTPDigits {
		return nil
	}
	cut := len(password) - TOTPDigits
	pw, code := password[:cut], password[cut:]
	if !isDigits(code, TOTPDigits) {
		return nil
	}
	var out []TOTPCandidate
	if p, ok := strings.CutSuffix(pw, ":"); ok && p != "" {
		out = append(out, TOTPCandidate{Password: p, Code: code})
	}
	return append(out, TOTPCandidate{Password: pw, Code: code})
}

// isDigits reports whether s is n ASCII digits.
func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
