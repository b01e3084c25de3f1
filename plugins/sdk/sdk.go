// Package sdk is the plugin side of imapproxy's plugins, for plugin
// programs written in Go: Serve runs one, Logger gives it a log the proxy
// reads. It depends on nothing of the proxy but the contract
// (plugins/proto), so that a plugin binary carries no more than it needs;
// the proxy's side is package plugins.
package sdk

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginpb "imapproxy/plugins/proto"
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
	AuthenticatorService = "authenticator"
	RouterService        = "router"
)

// Service is a go-plugin GRPCPlugin for one service: on the plugin side
// Register registers the implementation; on the proxy's side (Register
// nil) it hands out the connection, of which the proxy makes the typed
// client itself.
type Service struct {
	plugin.NetRPCUnsupportedPlugin
	Register func(*grpc.Server)
}

// GRPCServer registers the service's implementation (plugin side).
func (s *Service) GRPCServer(_ *plugin.GRPCBroker, srv *grpc.Server) error {
	if s.Register != nil {
		s.Register(srv)
	}
	return nil
}

// GRPCClient returns the connection to the plugin (proxy side).
func (s *Service) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// Services is the go-plugin plugin set of a plugin implementing a, r or
// both (nil for a service it does not implement).
func Services(a pluginpb.AuthenticatorServer, r pluginpb.RouterServer) plugin.PluginSet {
	set := plugin.PluginSet{}
	if a != nil {
		set[AuthenticatorService] = &Service{Register: func(s *grpc.Server) { pluginpb.RegisterAuthenticatorServer(s, a) }}
	}
	if r != nil {
		set[RouterService] = &Service{Register: func(s *grpc.Server) { pluginpb.RegisterRouterServer(s, r) }}
	}
	return set
}

// Serve runs a plugin program: call it from main with the services the
// plugin implements (nil for the other). It returns when the proxy ends
// the plugin. Run by hand rather than by the proxy, it says so and exits.
//
// A plugin's stderr reaches the proxy's log: write one line per event,
// or use go-hclog (Logger), and never a credential.
func Serve(a pluginpb.AuthenticatorServer, r pluginpb.RouterServer) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         Services(a, r),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          Logger(),
	})
}

// Logger is a logger for plugin programs: JSON lines on stderr, which
// the proxy reads into its own log with the plugin's name.
func Logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
}
