package upstream

import "strings"

// FilterCapabilities returns caps without the capabilities that cannot
// pass a proxy after login: STARTTLS, AUTH=*, LOGINDISABLED, SASL-IR and
// UNAUTHENTICATE, compared case-insensitively. The order is kept and caps
// is not modified.
func FilterCapabilities(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		u := strings.ToUpper(c)
		switch {
		case u == "STARTTLS", u == "LOGINDISABLED", u == "SASL-IR", u == "UNAUTHENTICATE",
			strings.HasPrefix(u, "AUTH="):
			continue
		}
		out = append(out, c)
	}
	return out
}

// hasCap reports whether caps contains name, case-insensitively.
func hasCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, name) {
			return true
		}
	}
	return false
}

// QuoteString returns s as an IMAP quoted string, and false if s should be
// sent as a literal instead. Only printable ASCII without '"' and '\' is
// quoted: backslash escapes are handled inconsistently by servers, and a
// literal is unambiguous for everything else (8-bit, control characters).
func QuoteString(s string) (string, bool) {
	if len(s) > 1024 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", false
		}
	}
	return `"` + s + `"`, true
}
