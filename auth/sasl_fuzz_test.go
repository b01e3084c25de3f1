package auth

import (
	"testing"

	"github.com/emersion/go-sasl"
)

// FuzzSASLServers feeds arbitrary client responses to the SASL servers the
// front door runs (PLAIN from go-sasl, OAUTHBEARER behind this package's
// guard, XOAUTH2): none may panic, and none may report success for
// credentials its callback refused.
func FuzzSASLServers(f *testing.F) {
	for _, s := range []string{
		"\x00alice\x00pw", "n,a=alice,\x01auth=Bearer tok\x01\x01", "user=alice\x01auth=Bearer tok\x01\x01",
		"", "\x01", "n,,\x01", "user=\x01auth=\x01\x01",
	} {
		f.Add([]byte(s), []byte{})
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		refuse := func() error { return ErrInvalidToken }
		servers := map[string]sasl.Server{
			"PLAIN": sasl.NewPlainServer(func(_, _, _ string) error { return refuse() }),
			"OAUTHBEARER": NewOAuthBearerServer(func(sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
				return &sasl.OAuthBearerError{Status: "invalid_token"}
			}),
			"XOAUTH2": NewXOAUTH2Server(func(_, _ string) error { return refuse() }, ""),
		}
		for name, srv := range servers {
			resp := first
			for i := 0; i < 3; i++ {
				_, done, err := srv.Next(resp)
				if done && err == nil {
					t.Fatalf("%s: success although every credential is refused (input %q, %q)", name, first, second)
				}
				if done || err != nil {
					break
				}
				resp = second
			}
		}
	})
}
