package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The values each enumeration accepts, in the order error messages list them.
var (
	tlsModes    = []string{string(TLSImplicit), string(TLSStartTLS), string(TLSNone)}
	modes       = []string{string(ModeRoute), string(ModeMerge)}
	verifiers   = []string{string(VerifyUpstream), string(VerifyProxy)}
	logLevels   = []string{"debug", "info", "warn", "error"}
	logFormats  = []string{"text", "json"}
	tlsVersions = []string{"1.2", "1.3"}
	pluginKinds = []string{string(PluginAuthenticator), string(PluginRouter)}
	onErrors    = []string{string(PluginErrorDeny), string(PluginErrorNext)}
)

// oneOf checks that v is one of allowed and, if not, says which are.
func oneOf(v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s is not one of %s", quoteShort(v), strings.Join(allowed, ", "))
}

// quoteShort quotes a value for an error message, cut to a readable length.
func quoteShort(v string) string {
	const limit = 64
	if len(v) > limit {
		return fmt.Sprintf("%q...", v[:limit])
	}
	return fmt.Sprintf("%q", v)
}

// UnmarshalText accepts "implicit", "starttls" or "none".
func (m *TLSMode) UnmarshalText(text []byte) error {
	if err := oneOf(string(text), tlsModes); err != nil {
		return err
	}
	*m = TLSMode(text)
	return nil
}

// UnmarshalText accepts "route" or "merge".
func (m *Mode) UnmarshalText(text []byte) error {
	if err := oneOf(string(text), modes); err != nil {
		return err
	}
	*m = Mode(text)
	return nil
}

// UnmarshalText accepts "upstream" or "proxy".
func (v *Verify) UnmarshalText(text []byte) error {
	if err := oneOf(string(text), verifiers); err != nil {
		return err
	}
	*v = Verify(text)
	return nil
}

// UnmarshalText accepts "authenticator" or "router".
func (k *PluginKind) UnmarshalText(text []byte) error {
	if err := oneOf(string(text), pluginKinds); err != nil {
		return err
	}
	*k = PluginKind(text)
	return nil
}

// UnmarshalText accepts "deny" or "next".
func (o *PluginOnError) UnmarshalText(text []byte) error {
	if err := oneOf(string(text), onErrors); err != nil {
		return err
	}
	*o = PluginOnError(text)
	return nil
}

// UnmarshalText parses a Go duration string such as "90s", "30m" or
// "1h30m". Negative durations are refused.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf(`%s is not a duration (write it like "30s", "5m" or "1h")`, quoteShort(string(text)))
	}
	if v < 0 {
		return fmt.Errorf("%s is negative", quoteShort(string(text)))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String returns d as a Go duration string ("30m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// errSecretForm is the only error an unparsable secret gets: the text may be
// a password someone wrote where a reference belongs, so it is never echoed.
var errSecretForm = errors.New(`must be "passthrough", "env:NAME", "file:PATH" or "store", ` +
	`optionally after "oauth2:" (the password itself does not belong in the config file)`)

// ParseSecret parses "passthrough", "env:NAME", "file:PATH" or "store",
// each optionally prefixed with "oauth2:" (not passthrough: a client's
// bearer token passes through on its own).
func ParseSecret(s string) (Secret, error) {
	var sec Secret
	oauth2 := strings.HasPrefix(s, "oauth2:")
	s = strings.TrimPrefix(s, "oauth2:")
	switch {
	case s == string(SecretStore):
		sec = Secret{Kind: SecretStore}
	case s == string(SecretPassthrough):
		sec = Secret{Kind: SecretPassthrough}
	case strings.HasPrefix(s, "env:"):
		sec = Secret{Kind: SecretEnv, Ref: s[len("env:"):]}
	case strings.HasPrefix(s, "file:"):
		sec = Secret{Kind: SecretFile, Ref: s[len("file:"):]}
	default:
		return Secret{}, errSecretForm
	}
	if oauth2 {
		if sec.Kind == SecretPassthrough {
			return Secret{}, errors.New(`"oauth2:" goes with env:, file: or store; a client's own token passes through with "passthrough"`)
		}
		sec.XOAUTH2 = true
	}
	if err := sec.check(); err != nil {
		return Secret{}, err
	}
	return sec, nil
}

// check reports whether s is a well-formed reference. A zero Secret is
// valid: it stands for the default, passthrough.
func (s Secret) check() error {
	switch s.Kind {
	case "":
		if s.Ref != "" {
			return errSecretForm
		}
	case SecretPassthrough, SecretStore:
		if s.Ref != "" {
			return fmt.Errorf("%q takes no reference", s.Kind)
		}
		if s.XOAUTH2 && s.Kind == SecretPassthrough {
			return errSecretForm
		}
	case SecretEnv:
		if !isEnvName(s.Ref) {
			return errors.New("env:NAME needs a variable name made of letters, digits and _, not starting with a digit")
		}
	case SecretFile:
		if s.Ref == "" {
			return errors.New("file:PATH needs a path")
		}
	default:
		return errSecretForm
	}
	return nil
}

func isEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// IsPassthrough reports whether s means the client's own password (the
// zero Secret does too, as passthrough is the default).
func (s Secret) IsPassthrough() bool {
	return s.Kind == SecretPassthrough || s.Kind == "" && s.Ref == ""
}

// UnmarshalText parses "passthrough", "env:NAME" or "file:PATH".
func (s *Secret) UnmarshalText(text []byte) error {
	sec, err := ParseSecret(string(text))
	if err != nil {
		return err
	}
	*s = sec
	return nil
}

// MarshalText writes s back in the form ParseSecret reads: the reference,
// never a value.
func (s Secret) MarshalText() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return []byte(s.String()), nil
}

// String returns the reference ("passthrough", "env:NAME", "file:PATH";
// "passthrough" for the zero Secret) and "(invalid secret)" for a malformed
// one. It never returns anything that is not a reference.
func (s Secret) String() string {
	if s.check() != nil {
		return "(invalid secret)"
	}
	prefix := ""
	if s.XOAUTH2 {
		prefix = "oauth2:"
	}
	switch s.Kind {
	case SecretEnv, SecretFile:
		return prefix + string(s.Kind) + ":" + s.Ref
	case SecretStore:
		return prefix + string(SecretStore)
	}
	return string(SecretPassthrough)
}
