package auth

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateAppPassword(t *testing.T) {
	if bits := float64(appPasswordLen) * math.Log2(float64(len(appPasswordAlphabet))); bits < 100 {
		t.Fatalf("app passwords carry %.1f bits; want at least 100", bits)
	}
	for _, c := range "0o1li" {
		if strings.ContainsRune(appPasswordAlphabet, c) {
			t.Fatalf("alphabet has look-alike %q", c)
		}
	}
	format := regexp.MustCompile(`^[` + appPasswordAlphabet + `]{4}(-[` + appPasswordAlphabet + `]{4}){5}$`)
	const n = 2000
	seen := make(map[string]bool, n)
	counts := make(map[rune]int)
	for range n {
		p, err := GenerateAppPassword()
		if err != nil {
			t.Fatal(err)
		}
		if !format.MatchString(p) {
			t.Fatalf("GenerateAppPassword = %q; want six dash-joined groups of four", p)
		}
		if !LooksLikeAppPassword(p) {
			t.Fatalf("LooksLikeAppPassword(%q) = false", p)
		}
		if seen[p] {
			t.Fatalf("GenerateAppPassword repeated %q", p)
		}
		seen[p] = true
		for _, c := range NormalizeAppPassword(p) {
			counts[c]++
		}
	}
	// Every symbol is used about equally: expected n*24/31 ≈ 1548 each;
	// ±25% is far outside chance for an unbiased generator.
	want := float64(n*appPasswordLen) / float64(len(appPasswordAlphabet))
	for _, c := range appPasswordAlphabet {
		if got := float64(counts[c]); got < 0.75*want || got > 1.25*want {
			t.Errorf("symbol %q drawn %v times; want about %.0f", c, got, want)
		}
	}
}

func TestNormalizeAppPassword(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"abcd-efgh-jkmn-pqrs-tuvw-xyz2", "abcdefghjkmnpqrstuvwxyz2"},
		{"ABCD EFGH jkmn-PQRS\ttuvw xyz2", "abcdefghjkmnpqrstuvwxyz2"},
		{"--  --", ""},
		{"Ünïcode-É", "ÜnïcodeÉ"},
	} {
		if got := NormalizeAppPassword(tt.in); got != tt.want {
			t.Errorf("NormalizeAppPassword(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestHashAppPassword(t *testing.T) {
	h := HashAppPassword("abcd-efgh-jkmn-pqrs-tuvw-xyz2")
	if len(h) != 32 {
		t.Fatalf("hash is %d bytes; want 32", len(h))
	}
	for _, same := range []string{"abcdefghjkmnpqrstuvwxyz2", "ABCD EFGH JKMN PQRS TUVW XYZ2", "abcd-efgh jkmn-pqrs tuvw-xyz2"} {
		if !bytes.Equal(HashAppPassword(same), h) {
			t.Errorf("HashAppPassword(%q) differs from the dashed form", same)
		}
	}
	if bytes.Equal(HashAppPassword("abcd-efgh-jkmn-pqrs-tuvw-xyz3"), h) {
		t.Error("different app passwords hash the same")
	}
}

func TestLooksLikeAppPassword(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"abcd-efgh-jkmn-pqrs-tuvw-xyz2", true},
		{"ABCDEFGHJKMNPQRSTUVWXYZ2", true},
		{"abcd efgh jkmn pqrs tuvw xyz2", true},
		{"abcd-efgh-jkmn-pqrs-tuvw-xyz", false},   // short
		{"abcd-efgh-jkmn-pqrs-tuvw-xyz23", false}, // long
		{"abcd-efgh-jkmn-pqrs-tuvw-xyz0", false},  // look-alike
		{"abcd-efgh-jkmn-pqrs-tuvw-xyzl", false},  // look-alike
		{"abcd_efgh_jkmn_pqrs_tuvw_xyz2", false},  // other separator
		{"correct horse battery staple", false},   // a password
		{"", false},
		{strings.Repeat("-", 1000) + "abcdefghjkmnpqrstuvwxyz2", false}, // bounded
	} {
		if got := LooksLikeAppPassword(tt.in); got != tt.want {
			t.Errorf("LooksLikeAppPassword(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
