package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"imapproxy/internal/selfsigned"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testCert struct {
	once sync.Once
	cert tls.Certificate
	pool *x509.CertPool
	err  error
}

// testTLS returns a server certificate for 127.0.0.1 and a pool that
// trusts it, generated once per test binary.
func testTLS(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	testCert.once.Do(func() {
		pair, err := selfsigned.Generate("127.0.0.1", "localhost")
		if err != nil {
			testCert.err = err
			return
		}
		testCert.cert, testCert.err = pair.TLSCertificate()
		testCert.pool = pair.CertPool()
	})
	if testCert.err != nil {
		t.Fatal(testCert.err)
	}
	return testCert.cert, testCert.pool
}
