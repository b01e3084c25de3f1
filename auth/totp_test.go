package auth

import (
	"encoding/base32"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// rfc6238Secret is the SHA1 key of RFC 6238 appendix B, in base32.
var rfc6238Secret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

func TestTOTPRFC6238Vectors(t *testing.T) {
	// Appendix B lists 8-digit codes; a 6-digit code is the same value
	// modulo 10^6, its last six digits.
	vectors := []struct {
		unix  int64
		step  int64
		code8 string
	}{
		{59, 0x1, "94287082"},
		{1111111109, 0x23523EC, "07081804"},
		{1111111111, 0x23523ED, "14050471"},
		{1234567890, 0x273EF07, "89005924"},
		{2000000000, 0x3F940AA, "69279037"},
		{20000000000, 0x27BC86AA, "65353130"},
	}
	for _, v := range vectors {
		now := time.Unix(v.unix, 0)
		if got := TOTPStep(now); got != v.step {
			t.Errorf("TOTPStep(%d) = %#x; want %#x", v.unix, got, v.step)
		}
		code := v.code8[2:]
		step, ok := MatchTOTP(rfc6238Secret, code, now)
		if !ok || step != v.step {
			t.Errorf("MatchTOTP(%s at %d) = %#x, %v; want %#x, true", code, v.unix, step, ok, v.step)
		}
	}
}

func TestTOTPStep(t *testing.T) {
	for _, tt := range []struct{ unix, want int64 }{
		{0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2}, {-1, -1}, {-30, -1}, {-31, -2},
	} {
		if got := TOTPStep(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("TOTPStep(%d) = %d; want %d", tt.unix, got, tt.want)
		}
	}
}

func TestMatchTOTP(t *testing.T) {
	now := time.Unix(1700000000, 0) // mid-step
	cur := TOTPStep(now)
	codeAt := func(step int64) string {
		c, err := totpCode(rfc6238Secret, step)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		secret   string
		code     string
		wantStep int64
		wantOK   bool
	}{
		{"current", rfc6238Secret, codeAt(cur), cur, true},
		{"previous", rfc6238Secret, codeAt(cur - 1), cur - 1, true},
		{"next", rfc6238Secret, codeAt(cur + 1), cur + 1, true},
		{"two back", rfc6238Secret, codeAt(cur - 2), 0, false},
		{"two ahead", rfc6238Secret, codeAt(cur + 2), 0, false},
		{"lowercase unpadded secret", strings.ToLower(strings.TrimRight(rfc6238Secret, "=")), codeAt(cur), cur, true},
		{"five digits", rfc6238Secret, codeAt(cur)[1:], 0, false},
		{"seven digits", rfc6238Secret, codeAt(cur) + "0", 0, false},
		{"eight-digit form", rfc6238Secret, "00" + codeAt(cur), 0, false},
		{"space", rfc6238Secret, " " + codeAt(cur)[1:], 0, false},
		{"letter", rfc6238Secret, codeAt(cur)[:5] + "a", 0, false},
		{"unicode digit", rfc6238Secret, codeAt(cur)[:5] + "٣", 0, false},
		{"empty", rfc6238Secret, "", 0, false},
		{"broken secret", "not base32!", codeAt(cur), 0, false},
		{"empty secret", "", codeAt(cur), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, ok := MatchTOTP(tt.secret, tt.code, now)
			if ok != tt.wantOK || step != tt.wantStep {
				t.Fatalf("MatchTOTP = %d, %v; want %d, %v", step, ok, tt.wantStep, tt.wantOK)
			}
		})
	}
}

func TestMatchTOTPAcrossBoundary(t *testing.T) {
	// A code read at the last second of a step and typed in the first
	// seconds of the next is accepted, and reported as the earlier step,
	// which is what the caller's replay check records.
	end := time.Unix(30*1000+29, 0)
	code, err := totp.GenerateCode(rfc6238Secret, end)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := MatchTOTP(rfc6238Secret, code, end.Add(5*time.Second))
	if !ok || step != 1000 {
		t.Fatalf("MatchTOTP = %d, %v; want 1000, true", step, ok)
	}
}

func TestNewTOTPSecret(t *testing.T) {
	secret, uri, err := NewTOTPSecret("imapproxy", "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil || len(raw) != 20 {
		t.Fatalf("secret decodes to %d bytes, %v; want 20", len(raw), err)
	}
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	if key.Type() != "totp" || key.Issuer() != "imapproxy" || key.AccountName() != "alice@example.org" ||
		key.Secret() != secret || key.Period() != 30 || key.Digits() != otp.DigitsSix || key.Algorithm() != otp.AlgorithmSHA1 {
		t.Fatalf("URI %s does not describe the secret with the defaults", uri)
	}
	// What an app computes from the URI matches.
	now := time.Now()
	code, err := totp.GenerateCode(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	if step, ok := MatchTOTP(secret, code, now); !ok || step != TOTPStep(now) {
		t.Fatalf("MatchTOTP of an app's code = %d, %v", step, ok)
	}
	other, _, err := NewTOTPSecret("imapproxy", "alice@example.org")
	if err != nil || other == secret {
		t.Fatalf("second secret = same %v, %v", other == secret, err)
	}
	if _, _, err := NewTOTPSecret("", "alice"); err == nil {
		t.Fatal("NewTOTPSecret without an issuer succeeded")
	}
	if _, _, err := NewTOTPSecret("imapproxy", ""); err == nil {
		t.Fatal("NewTOTPSecret without an account succeeded")
	}
}

func TestSplitTOTP(t *testing.T) {
	c := func(pw, code string) TOTPCandidate { return TOTPCandidate{Password: pw, Code: code} }
	tests := []struct {
		in   string
		want []TOTPCandidate
	}{
		{"secret123456", []TOTPCandidate{c("secret", "123456")}},
		{"secret:123456", []TOTPCandidate{c("secret", "123456"), c("secret:", "123456")}},
		{"secret::123456", []TOTPCandidate{c("secret:", "123456"), c("secret::", "123456")}},
		{"pass99123456", []TOTPCandidate{c("pass99", "123456")}},
		{"x123456", []TOTPCandidate{c("x", "123456")}},
		{":123456", []TOTPCandidate{c(":", "123456")}},
		{"1234567", []TOTPCandidate{c("1", "234567")}},
		{"a:b:000000", []TOTPCandidate{c("a:b", "000000"), c("a:b:", "000000")}},
		{"123456", nil},
		{"12345", nil},
		{"", nil},
		{"secret", nil},
		{"secret12345", nil},
		{"secret12345a", nil},
		{"secret:12345", nil},
		{"secret 123456", []TOTPCandidate{c("secret ", "123456")}},
		{"secret١٢٣٤٥٦", nil},
	}
	for _, tt := range tests {
		got := SplitTOTP(tt.in)
		if len(got) != len(tt.want) {
			t.Errorf("SplitTOTP(%q) = %q; want %q", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("SplitTOTP(%q) = %q; want %q", tt.in, got, tt.want)
				break
			}
		}
	}
}

func FuzzSplitTOTP(f *testing.F) {
	for _, s := range []string{"secret123456", "secret:123456", ":123456", "123456", "a:b:c:999999", "\xff\xfe123456", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := SplitTOTP(in)
		if len(got) > 2 {
			t.Fatalf("SplitTOTP(%q) gave %d candidates", in, len(got))
		}
		for i, c := range got {
			if c.Password == "" {
				t.Fatalf("SplitTOTP(%q): candidate %d has an empty password", in, i)
			}
			if !isDigits(c.Code, TOTPDigits) || !strings.HasSuffix(in, c.Code) {
				t.Fatalf("SplitTOTP(%q): candidate %d code %q is not the last six digits", in, i, c.Code)
			}
			if c.Password+c.Code != in && c.Password+":"+c.Code != in {
				t.Fatalf("SplitTOTP(%q): candidate %q does not rebuild the input", in, c)
			}
		}
		if len(got) == 2 && got[0].Password+":" != got[1].Password {
			t.Fatalf("SplitTOTP(%q) = %q: the colon form must come first", in, got)
		}
		if len(got) == 0 && len(in) > TOTPDigits && isDigits(in[len(in)-TOTPDigits:], TOTPDigits) {
			t.Fatalf("SplitTOTP(%q) gave no candidate", in)
		}
	})
}
