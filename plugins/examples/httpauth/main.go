// Command httpauth is an example authenticator plugin that asks an HTTP
// endpoint, the way nginx's mail module asks its auth_http server, so
// that an auth service written for nginx mail keeps working behind
// imapproxy. For each login it sends
//
//	GET <url>
//	Auth-Method: plain            (or "oauthbearer" for a token)
//	Auth-User: <login, URL-escaped>
//	Auth-Pass: <password or token, URL-escaped>
//	Auth-Protocol: imap
//	Auth-Login-Attempt: 1
//	Client-IP: <address>
//	Client-Port: <port>
//	Auth-SSL: on                  (when the client uses TLS)
//
// and reads the answer's headers: "Auth-Status: OK" allows the login
// (with "Auth-User", if given, as the canonical user name), any other
// Auth-Status denies it with that text as the reason. An answer without
// Auth-Status, a 5xx or an unreachable endpoint is an error: the proxy
// fails the login with NO [UNAVAILABLE] (or asks the next authenticator,
// with on_error = "next"). "Auth-Require-2FA: true" in the answer sets the
// require_2fa attribute. Auth-Server and Auth-Port are ignored: routing
// is the proxy's, or a router plugin's, business.
//
// Usage: httpauth -url http://127.0.0.1:9000/auth [-timeout 5s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	pluginpb "imapproxy/plugins/proto"
	"imapproxy/plugins/sdk"
)

type httpAuth struct {
	pluginpb.UnimplementedAuthenticatorServer
	url    string
	client *http.Client
}

// Authenticate implements pluginpb.AuthenticatorServer.
func (h *httpAuth) Authenticate(ctx context.Context, req *pluginpb.AuthenticateRequest) (*pluginpb.AuthenticateResponse, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, err
	}
	method := "plain"
	if req.GetKind() == pluginpb.CredentialKind_CREDENTIAL_KIND_TOKEN {
		method = "oauthbearer"
	}
	hr.Header.Set("Auth-Method", method)
	hr.Header.Set("Auth-User", url.QueryEscape(req.GetLogin()))
	hr.Header.Set("Auth-Pass", url.QueryEscape(req.GetCredential()))
	hr.Header.Set("Auth-Protocol", "imap")
	hr.Header.Set("Auth-Login-Attempt", "1")
	hr.Header.Set("Client-IP", req.GetClientIp())
	hr.Header.Set("Client-Port", strconv.Itoa(int(req.GetClientPort())))
	if req.GetTls() {
		hr.Header.Set("Auth-SSL", "on")
	}
	resp, err := h.client.Do(hr)
	if err != nil {
		// The error names the URL, never the headers.
		return nil, fmt.Errorf("auth endpoint: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	status := resp.Header.Get("Auth-Status")
	switch {
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("auth endpoint: %s", resp.Status)
	case status == "":
		return nil, errors.New("auth endpoint: no Auth-Status in the answer")
	case status != "OK":
		return &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_DENY, Reason: status}, nil
	}
	out := &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_ALLOW}
	if u := resp.Header.Get("Auth-User"); u != "" {
		if out.User, err = url.QueryUnescape(u); err != nil {
			return nil, fmt.Errorf("auth endpoint: Auth-User: %w", err)
		}
	}
	if strings.EqualFold(resp.Header.Get("Auth-Require-2FA"), "true") {
		out.Attributes = map[string]string{"require_2fa": "true"}
	}
	return out, nil
}

func main() {
	endpoint := flag.String("url", "", "the auth_http endpoint")
	timeout := flag.Duration("timeout", 5*time.Second, "how long to wait for the endpoint")
	flag.Parse()
	if u, err := url.Parse(*endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintln(os.Stderr, "httpauth: -url must be an http:// or https:// URL")
		os.Exit(2)
	}
	sdk.Serve(&httpAuth{url: *endpoint, client: &http.Client{Timeout: *timeout}}, nil)
}
