package router

import (
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Match reports whether the [[route]] pattern fits login.
//
// A pattern with no '@' and no glob metacharacter ('*', '?', '[', '\\')
// names a domain: it matches a login whose part after the last '@' equals
// it. Any other pattern is a glob with path.Match semantics on the whole
// login ("*@example.com", "alice*"); note that '*' and '?' do not match
// '/'. Both forms compare ASCII letters case-insensitively. A malformed
// pattern matches nothing.
func Match(pattern, login string) bool {
	if pattern == "" {
		return false
	}
	if !strings.ContainsAny(pattern, "@*?[\\") {
		_, domain := splitLogin(login)
		return strings.Contains(login, "@") && EqualNames(pattern, domain)
	}
	ok, err := path.Match(toLowerASCII(pattern), toLowerASCII(login))
	return err == nil && ok
}

// Expand fills the username template tmpl for login: {user} is the whole
// login, {local} the part before the last '@' and {domain} the part after
// it (empty without '@'). An empty template means "{user}". Other text,
// unknown placeholders included, is copied as is, and substituted values
// are never expanded again.
func Expand(tmpl, login string) string {
	if tmpl == "" {
		return login
	}
	local, domain := splitLogin(login)
	return strings.NewReplacer("{user}", login, "{local}", local, "{domain}", domain).Replace(tmpl)
}

// CheckLogin returns ErrBadLogin if login cannot be a user name: empty,
// longer than MaxLoginLength bytes, not valid UTF-8, or containing a space
// or control character (Unicode classes, so also NBSP, C1 controls, line
// separators and invisible format characters such as U+202E, which could
// disguise a name in logs).
func CheckLogin(login string) error {
	if login == "" || len(login) > MaxLoginLength || !utf8.ValidString(login) {
		return ErrBadLogin
	}
	for _, c := range login {
		if unicode.IsSpace(c) || unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || c == utf8.RuneError {
			return ErrBadLogin
		}
	}
	return nil
}
