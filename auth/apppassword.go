package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
)

// appPasswordAlphabet has the lowercase letters and digits that cannot be
// mistaken for another when read off a screen: no 0/o, 1/l/i.
const appPasswordAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"

// App password shape: 24 characters of a 31-symbol alphabet, about 118.9
// bits, shown as six groups of four.
const (
	appPasswordLen   = 24
	appPasswordGroup = 4
)

// GenerateAppPassword returns a new random app password, such as
// "k7mw-2xqa-hd9e-frtz-pnc3-y8vb": 24 characters from crypto/rand (about
// 119 bits) in groups of four joined by dashes, for typing. Store only
// HashAppPassword of it.
func GenerateAppPassword() (string, error) {
	const n = len(appPasswordAlphabet)
	var b strings.Builder
	b.Grow(appPasswordLen + appPasswordLen/appPasswordGroup)
	buf := make([]byte, 64)
	count := 0
	for count < appPasswordLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("auth: generate app password: %w", err)
		}
		for _, r := range buf {
			// Rejection sampling over 5 bits keeps every symbol
			// equally likely.
			v := int(r & 31)
			if v >= n {
				continue
			}
			if count > 0 && count%appPasswordGroup == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(appPasswordAlphabet[v])
			count++
			if count == appPasswordLen {
				break
			}
		}
	}
	return b.String(), nil
}

// NormalizeAppPassword returns s with ASCII letters lowercased and
// without the dashes, spaces and tabs that users may type or leave out.
func NormalizeAppPassword(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			return -1
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// HashAppPassword returns the SHA-256 of NormalizeAppPassword(s): what is
// stored and looked up. A fast hash is enough since app passwords are
// random with over 100 bits; a slow one would only cost CPU on every login.
func HashAppPassword(s string) []byte {
	h := sha256.Sum256([]byte(NormalizeAppPassword(s)))
	return h[:]
}

// LooksLikeAppPassword reports whether s, normalized, has the length and
// alphabet of a GenerateAppPassword result, so that the login flow looks
// up in the store only the passwords that can be app passwords.
func LooksLikeAppPassword(s string) bool {
	// Bound the work before normalizing an arbitrary password.
	if len(s) > 4*appPasswordLen {
		return false
	}
	s = NormalizeAppPassword(s)
	if len(s) != appPasswordLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(appPasswordAlphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
