package merge

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when they leave goroutines behind.
//
// One kind is let through: an imapserver connection goroutine waiting
// forever for its response encoder. imapmemserver (the tests' upstream)
// can leave a FETCH response writer open when its connection is cut in
// the middle of a message (the fault tests cut them), and imapserver then
// never releases the encoder's lock; the goroutine outlives the server's
// Close. The merged session closes every response writer it opens, so
// this does not hide a leak of the proxy's own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/emersion/go-imap/v2/imapserver.newResponseEncoder"))
}
