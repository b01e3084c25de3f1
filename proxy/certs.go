package proxy

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// CertStore holds the proxy's certificate and can read it again (SIGHUP)
// without disturbing sessions: new handshakes get the new pair.
type CertStore struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// NewCertStore reads the key pair once.
func NewCertStore(certFile, keyFile string) (*CertStore, error) {
	cs := &CertStore{certFile: certFile, keyFile: keyFile}
	if err := cs.Reload(); err != nil {
		return nil, err
	}
	return cs, nil
}

// Reload reads the key pair again. On error the old pair stays in use.
func (cs *CertStore) Reload() error {
	c, err := tls.LoadX509KeyPair(cs.certFile, cs.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s / %s: %w", cs.certFile, cs.keyFile, err)
	}
	cs.cert.Store(&c)
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (cs *CertStore) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return cs.cert.Load(), nil
}
