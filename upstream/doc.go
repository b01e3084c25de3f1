// Package upstream dials upstream IMAP servers and logs in to them.
//
// For route mode, Dial connects (implicit TLS, STARTTLS or cleartext), reads
// the greeting, optionally tells the upstream the real client address with
// ID, and Login authenticates. Detach then hands the raw connection, and any
// bytes already read from it, to the proxy's byte relay.
//
// The login phase is a small hand-written line-level exchange rather than
// imapclient: imapclient owns the connection with its own reader goroutine
// and buffering, so after a login through it there is no way to take the
// connection back without losing or duplicating bytes the relay must see.
// Doing the few commands of the login phase by hand keeps every byte
// accounted for, every command in one write, and every step under a
// deadline.
package upstream
