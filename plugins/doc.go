// Package plugins runs imapproxy's plugins: programs, started by the
// proxy, that decide logins (authenticators) or where sessions go
// (routers), talking hashicorp/go-plugin over gRPC. The contract is
// proto/plugin.proto; Serve is the plugin side for plugins written in Go,
// and examples/ holds three real ones.
//
// The host side (Host) starts every configured plugin at boot, checking
// its executable's sha256 first, restarts one that dies with a growing
// delay, and stops them all on Close. Each call has the plugin's timeout.
// A plugin that crashed, hung or answered nonsense fails the login
// (NO [UNAVAILABLE]) unless its on_error is "next"; either way the
// failure is logged (never with the credential) and counted in metrics.
package plugins

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the plugin protocol version: plugin.proto's package
// imapproxy.plugin.v1. A plugin built for another version does not start.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake both sides must agree on. The
// cookie is not a secret: it keeps a plugin from being run as a program
// by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "IMAPPROXY_PLUGIN",
	MagicCookieValue: "d5c7a0f6-imapproxy-plugin",
}

// The go-plugin names of the two services.
const (
	authenticatorName = "authenticator"
	routerName        = "router"
)
