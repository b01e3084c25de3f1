package plugins

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginpb "imapproxy/plugins/proto"
)

// grpcService is a go-plugin GRPCPlugin for one service: on the plugin
// side it registers the implementation, on the host side it hands out
// the connection (the host makes the typed client itself).
type grpcService struct {
	plugin.NetRPCUnsupportedPlugin
	register func(*grpc.Server)
}

// GRPCServer registers the service's implementation (plugin side).
func (s *grpcService) GRPCServer(_ *plugin.GRPCBroker, srv *grpc.Server) error {
	if s.register != nil {
		s.register(srv)
	}
	return nil
}

// GRPCClient returns the connection to the plugin (host side).
func (s *grpcService) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// hostPlugins is the plugin set the host offers for a kind.
func hostPlugins(name string) plugin.PluginSet {
	return plugin.PluginSet{name: &grpcService{}}
}

// Serve runs a plugin program: call it from main with the services the
// plugin implements (nil for the other). It returns when the proxy ends
// the plugin. Run by hand rather than by the proxy, it says so and exits.
//
// A plugin's stderr reaches the proxy's log: write one line per event,
// or use go-hclog (Logger), and never a credential.
func Serve(a pluginpb.AuthenticatorServer, r pluginpb.RouterServer) {
	set := plugin.PluginSet{}
	if a != nil {
		set[authenticatorName] = &grpcService{register: func(s *grpc.Server) { pluginpb.RegisterAuthenticatorServer(s, a) }}
	}
	if r != nil {
		set[routerName] = &grpcService{register: func(s *grpc.Server) { pluginpb.RegisterRouterServer(s, r) }}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         set,
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          Logger(),
	})
}

// Logger is a logger for plugin programs: JSON lines on stderr, which
// the proxy reads into its own log with the plugin's name.
func Logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
}
