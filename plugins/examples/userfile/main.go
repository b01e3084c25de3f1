// Command userfile is an example authenticator plugin: it checks logins
// against a JSON file of users with argon2id (or bcrypt) hashes, as made
// by "imapproxy hash-password":
//
//	{"users": [
//	  {"name": "alice@example.com", "logins": ["alice"],
//	   "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$...",
//	   "attributes": {"require_2fa": "true"}}
//	]}
//
// A user logs in with the name or any of the logins (ASCII case folded);
// the plugin then answers ALLOW with the name as the canonical user, or
// DENY. Logins it does not list get CONTINUE, for the next authenticator.
// The file is read again when it changes.
//
// Usage: userfile -users /etc/imapproxy/users.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"imapproxy/auth"
	pluginpb "imapproxy/plugins/proto"
	"imapproxy/plugins/sdk"
)

type user struct {
	Name         string            `json:"name"`
	Logins       []string          `json:"logins"`
	PasswordHash string            `json:"password_hash"`
	Attributes   map[string]string `json:"attributes"`
}

// directory is the user file, read again when its modification time
// changes.
type directory struct {
	pluginpb.UnimplementedAuthenticatorServer
	path string

	mu      sync.Mutex
	modTime time.Time
	byLogin map[string]*user
}

func (d *directory) load() (map[string]*user, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := os.Stat(d.path)
	if err != nil {
		return nil, err
	}
	if d.byLogin != nil && st.ModTime().Equal(d.modTime) {
		return d.byLogin, nil
	}
	data, err := os.ReadFile(d.path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Users []*user `json:"users"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	m := make(map[string]*user)
	for _, u := range f.Users {
		if u.Name == "" || u.PasswordHash == "" {
			return nil, fmt.Errorf("%s: every user needs a name and a password_hash", d.path)
		}
		for _, l := range append([]string{u.Name}, u.Logins...) {
			m[auth.Key(l)] = u
		}
	}
	d.byLogin, d.modTime = m, st.ModTime()
	return m, nil
}

// Authenticate implements pluginpb.AuthenticatorServer.
func (d *directory) Authenticate(ctx context.Context, req *pluginpb.AuthenticateRequest) (*pluginpb.AuthenticateResponse, error) {
	if req.GetKind() != pluginpb.CredentialKind_CREDENTIAL_KIND_PASSWORD {
		return &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_CONTINUE}, nil
	}
	users, err := d.load()
	if err != nil {
		return nil, err // the proxy fails the login, or asks the next authenticator
	}
	u, ok := users[auth.Key(req.GetLogin())]
	if !ok {
		return &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_CONTINUE, Reason: "not in the user file"}, nil
	}
	ok, err = auth.CheckPassword(u.PasswordHash, req.GetCredential())
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", u.Name, err)
	}
	if !ok {
		return &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_DENY, Reason: "wrong password"}, nil
	}
	return &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_ALLOW, User: u.Name, Attributes: u.Attributes}, nil
}

func main() {
	path := flag.String("users", "", "the JSON user file")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "userfile: -users is required")
		os.Exit(2)
	}
	d := &directory{path: *path}
	if _, err := d.load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "userfile:", err)
		os.Exit(1)
	}
	sdk.Serve(d, nil)
}
