package plugins

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc"

	"imapproxy/auth"
	"imapproxy/config"
	pluginpb "imapproxy/plugins/proto"
	"imapproxy/router"
)

// Bounds on an authenticator's attributes; more is a malformed answer.
const (
	maxAttributes  = 64
	maxAttrLength  = 1024
	maxReasonBytes = 256
)

// authenticator is an authenticator plugin as an auth.Verifier.
type authenticator struct {
	p     *process
	cache *cache
}

var _ auth.Verifier = (*authenticator)(nil)

// Verify asks the plugin about c. A failure is an error (the login gets
// NO [UNAVAILABLE]), or, with on_error = "next", Continue.
func (a *authenticator) Verify(ctx context.Context, c auth.Credentials) (auth.Verdict, error) {
	req := &pluginpb.AuthenticateRequest{
		Login: c.Username, Kind: pluginpb.CredentialKind_CREDENTIAL_KIND_PASSWORD, Credential: c.Password,
		ClientPort: uint32(c.RemotePort), Listener: c.Listener, Tls: c.TLS, Mechanism: c.Mechanism,
	}
	if c.Remote.IsValid() {
		req.ClientIp = c.Remote.String()
	}
	if c.Token != "" {
		req.Kind, req.Credential = pluginpb.CredentialKind_CREDENTIAL_KIND_TOKEN, c.Token
	}
	name := a.p.cfg.Name
	var key string
	if a.cache != nil {
		key = a.cache.keyOf(req.Login, req.Kind.String(), req.Credential, req.ClientIp, req.Listener, strconv.FormatBool(req.Tls), req.Mechanism)
		if v, ok := a.cache.get(key); ok {
			verdict := v.(auth.Verdict)
			a.p.metrics.Calls.WithLabelValues(name, "cached_"+decisionName(verdict.Decision)).Inc()
			return verdict, nil
		}
	}
	var resp *pluginpb.AuthenticateResponse
	err := a.p.invoke(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		var err error
		resp, err = pluginpb.NewAuthenticatorClient(conn).Authenticate(ctx, req)
		return err
	})
	var verdict auth.Verdict
	if err == nil {
		verdict, err = toVerdict(resp, name)
	}
	if err != nil {
		if err := a.p.failed(err, c.Username, req.ClientIp); err != nil {
			return auth.Verdict{}, err
		}
		return auth.Verdict{Decision: auth.Continue, Source: name}, nil
	}
	a.p.metrics.Calls.WithLabelValues(name, decisionName(verdict.Decision)).Inc()
	a.cache.put(key, verdict)
	return verdict, nil
}

// toVerdict checks the plugin's answer and turns it into a Verdict.
func toVerdict(r *pluginpb.AuthenticateResponse, source string) (auth.Verdict, error) {
	v := auth.Verdict{User: r.GetUser(), Reason: r.GetReason(), Source: source}
	switch r.GetDecision() {
	case pluginpb.Decision_DECISION_ALLOW:
		v.Decision = auth.Allow
	case pluginpb.Decision_DECISION_DENY:
		v.Decision = auth.Deny
	case pluginpb.Decision_DECISION_CONTINUE:
		v.Decision = auth.Continue
	default:
		return auth.Verdict{}, malformed("decision %v", r.GetDecision())
	}
	if v.User != "" {
		if err := router.CheckLogin(v.User); err != nil {
			return auth.Verdict{}, malformed("user %q is not a valid user name", truncate(v.User, 64))
		}
	}
	if len(v.Reason) > maxReasonBytes {
		v.Reason = truncate(v.Reason, maxReasonBytes)
	}
	if attrs := r.GetAttributes(); len(attrs) > 0 {
		if len(attrs) > maxAttributes {
			return auth.Verdict{}, malformed("%d attributes (at most %d)", len(attrs), maxAttributes)
		}
		for k, val := range attrs {
			if len(k) > maxAttrLength || len(val) > maxAttrLength {
				return auth.Verdict{}, malformed("attribute %q longer than %d bytes", truncate(k, 64), maxAttrLength)
			}
		}
		v.Attributes = attrs
	}
	return v, nil
}

func decisionName(d auth.Decision) string {
	switch d {
	case auth.Allow:
		return "allow"
	case auth.Deny:
		return "deny"
	}
	return "continue"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// failed logs and counts a failed call. It returns the error the caller
// is to fail with, or nil when on_error = "next" hands the decision on.
// The log has the login and address, never the credential.
func (p *process) failed(err error, user, remote string) error {
	result := "error"
	var ce *callError
	if errors.As(err, &ce) {
		result = ce.result
	}
	p.metrics.Calls.WithLabelValues(p.cfg.Name, result).Inc()
	p.log.Warn("plugin call failed", "user", user, "remote", remote, "result", result, "on_error", string(p.cfg.OnError), "err", err)
	if p.cfg.OnError == config.PluginErrorNext {
		return nil
	}
	return fmt.Errorf("plugin %s: %w", p.cfg.Name, err)
}
