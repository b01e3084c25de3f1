// Command domainrouter is an example router plugin: it sends each user to
// the upstream of the user's domain, and listed users to merge mode over
// several accounts. Its JSON file:
//
//	{"domains": {
//	   "example.com": {"upstream": "work", "username": "{local}"},
//	   "example.org": {"upstream": "home"}},
//	 "merge": {
//	   "carol@example.com": {
//	     "accounts": [
//	       {"name": "work", "upstream": "work", "username": "carol", "prefix": "Work"},
//	       {"name": "home", "upstream": "home", "username": "carol@example.org", "prefix": "Home"}],
//	     "unified_inbox": true, "default_account": "work"}}}
//
// Upstream names are the proxy's [[upstream]] names; "username" templates
// take {user}, {local} and {domain}; "password" is a reference as in the
// configuration (default "passthrough"). Users of no listed domain get
// MODE_DEFAULT: the proxy's own [[user]] and [[route]] entries decide.
//
// Usage: domainrouter -config /etc/imapproxy/domains.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	pluginpb "imapproxy/plugins/proto"
	"imapproxy/plugins/sdk"
	"imapproxy/router"
)

type domainRoute struct {
	Upstream string `json:"upstream"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type account struct {
	Name     string `json:"name"`
	Upstream string `json:"upstream"`
	Username string `json:"username"`
	Password string `json:"password"`
	Prefix   string `json:"prefix"`
}

type mergeUser struct {
	Accounts          []account `json:"accounts"`
	UnifiedInbox      bool      `json:"unified_inbox"`
	UnifiedSpecialUse []string  `json:"unified_special_use"`
	DefaultAccount    string    `json:"default_account"`
}

type rules struct {
	Domains map[string]domainRoute `json:"domains"`
	Merge   map[string]mergeUser   `json:"merge"`
}

type domainRouter struct {
	pluginpb.UnimplementedRouterServer
	domains map[string]domainRoute // by lowercased domain
	merge   map[string]mergeUser   // by auth-folded user name
}

// Route implements pluginpb.RouterServer.
func (d *domainRouter) Route(ctx context.Context, req *pluginpb.RouteRequest) (*pluginpb.RouteResponse, error) {
	user := req.GetUser()
	if m, ok := d.merge[strings.ToLower(user)]; ok {
		resp := &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_MERGE, UnifiedInbox: m.UnifiedInbox,
			UnifiedSpecialUse: m.UnifiedSpecialUse, DefaultAccount: m.DefaultAccount, Reason: "listed merge user"}
		for _, a := range m.Accounts {
			resp.Accounts = append(resp.Accounts, &pluginpb.Account{Name: a.Name, Upstream: a.Upstream,
				Username: router.Expand(a.Username, user), Password: a.Password, Prefix: a.Prefix})
		}
		return resp, nil
	}
	i := strings.LastIndexByte(user, '@')
	domain := user[i+1:]
	r, listed := d.domains[strings.ToLower(domain)]
	if i < 0 || !listed {
		return &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_DEFAULT}, nil
	}
	return &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_ROUTE, Upstream: r.Upstream,
		UpstreamUser: router.Expand(r.Username, user), UpstreamPassword: r.Password, Reason: "domain " + domain}, nil
}

func load(path string) (*domainRouter, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r rules
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &domainRouter{domains: make(map[string]domainRoute), merge: make(map[string]mergeUser)}
	for k, v := range r.Domains {
		d.domains[strings.ToLower(k)] = v
	}
	for k, v := range r.Merge {
		d.merge[strings.ToLower(k)] = v
	}
	return d, nil
}

func main() {
	path := flag.String("config", "", "the JSON rules file")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "domainrouter: -config is required")
		os.Exit(2)
	}
	d, err := load(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "domainrouter:", err)
		os.Exit(1)
	}
	sdk.Serve(nil, d)
}
