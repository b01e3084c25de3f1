// Package plugins runs imapproxy's plugins: programs, started by the
// proxy, that decide logins (authenticators) or where sessions go
// (routers), talking hashicorp/go-plugin over gRPC. The contract is
// proto/plugin.proto; package sdk is the plugin side for plugins written
// in Go, and examples/ holds three real ones.
//
// The host side (Host) starts every configured plugin at boot, checking
// its executable's sha256 first, restarts one that dies with a growing
// delay, and stops them all on Close. Each call has the plugin's timeout.
// A plugin that crashed, hung or answered nonsense fails the login
// (NO [UNAVAILABLE]) unless its on_error is "next"; either way the
// failure is logged (never with the credential) and counted in metrics.
package plugins
