package router

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
)

var (
	passthrough = config.Secret{Kind: config.SecretPassthrough}
	envSecret   = config.Secret{Kind: config.SecretEnv, Ref: "UP_PW"}
	fileSecret  = config.Secret{Kind: config.SecretFile, Ref: "/run/secrets/pw"}
)

func testConfig() *config.Config {
	return &config.Config{
		Upstreams: []config.Upstream{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "legacy"}},
		Users: []config.User{
			{Name: "alice@example.com", PasswordHash: "$argon2id$x", Upstream: "a"},
			{Name: "bob@example.com", Upstream: "b", UpstreamUser: "robert", UpstreamPassword: envSecret},
			{Name: "carol@example.com", PasswordHash: "$2b$x"}, // routed by rules
			{Name: "dave@corp.test"}, // no hash, no upstream: rules decide
			{Name: "erin@corp.test", PasswordHash: "$2b$x", UpstreamUser: "erin-up", UpstreamPassword: fileSecret},
			{Name: "Frank@Example.com", Upstream: "a"},
			{Name: "ghost@nowhere.test", Upstream: "undefined"},
			{Name: "merge@example.com", Upstream: "a", Mode: "merge"},
		},
		Routes: []config.Route{
			{Match: "corp.test", Upstream: "c", Verify: config.VerifyProxy, Username: "{local}"},
			{Match: "admin*", Upstream: "legacy", Username: "{local}+{domain}", Password: fileSecret},
			{Match: "*@example.com", Upstream: "b", Username: "{local}"},
			{Match: "example.org", Upstream: "c", Verify: config.VerifyUpstream, Password: envSecret},
			{Match: "*@*.example.net", Upstream: "a", Username: "{domain}"},
			{Match: "[", Upstream: "a"}, // malformed: matches nothing
			{Match: "nodomain", Upstream: "a"},
			{Match: "broken.test", Upstream: "missing"},
			{Match: "*@empty.test", Upstream: "a", Username: "{domain}x{domain}"},
			{Match: "*@blank.test", Upstream: "a", Username: "{local}"},
		},
	}
}

func TestPlan(t *testing.T) {
	r := New(testConfig())
	tests := []struct {
		name  string
		login string
		want  Plan
		err   error // nil: want must equal the plan
	}{
		{"listed user with upstream and hash", "alice@example.com",
			Plan{"alice@example.com", config.ModeRoute, "a", "alice@example.com", passthrough, config.VerifyProxy, nil}, nil},
		{"listed user matched case-insensitively, canonical name kept", "ALICE@Example.COM",
			Plan{"alice@example.com", config.ModeRoute, "a", "alice@example.com", passthrough, config.VerifyProxy, nil}, nil},
		{"config spelling is canonical", "frank@example.com",
			Plan{"Frank@Example.com", config.ModeRoute, "a", "Frank@Example.com", passthrough, config.VerifyUpstream, nil}, nil},
		{"listed user without hash, own upstream user and secret", "bob@example.com",
			Plan{"bob@example.com", config.ModeRoute, "b", "robert", envSecret, config.VerifyUpstream, nil}, nil},
		{"listed user with hash, no upstream: rule gives upstream and template", "carol@example.com",
			Plan{"carol@example.com", config.ModeRoute, "b", "carol", passthrough, config.VerifyProxy, nil}, nil},
		{"listed user with hash passes a verify=proxy rule; own fields win", "erin@corp.test",
			Plan{"erin@corp.test", config.ModeRoute, "c", "erin-up", fileSecret, config.VerifyProxy, nil}, nil},
		{"listed user without hash is refused by a verify=proxy rule", "dave@corp.test", Plan{}, ErrNoRoute},
		{"unlisted login is refused by a verify=proxy rule (first match decides)", "zed@corp.test", Plan{}, ErrNoRoute},
		{"unlisted login, glob on whole login", "zed@example.com",
			Plan{"zed@example.com", config.ModeRoute, "b", "zed", passthrough, config.VerifyUpstream, nil}, nil},
		{"unlisted login keeps its spelling", "Zed@EXAMPLE.com",
			Plan{"Zed@EXAMPLE.com", config.ModeRoute, "b", "Zed", passthrough, config.VerifyUpstream, nil}, nil},
		{"rule order: admin* comes before *@example.com", "admin@example.com",
			Plan{"admin@example.com", config.ModeRoute, "legacy", "admin+example.com", fileSecret, config.VerifyUpstream, nil}, nil},
		{"domain rule, default template", "x@example.org",
			Plan{"x@example.org", config.ModeRoute, "c", "x@example.org", envSecret, config.VerifyUpstream, nil}, nil},
		{"domain rule is case-insensitive", "x@EXAMPLE.ORG",
			Plan{"x@EXAMPLE.ORG", config.ModeRoute, "c", "x@EXAMPLE.ORG", envSecret, config.VerifyUpstream, nil}, nil},
		{"domain rule does not match a subdomain", "x@sub.example.org", Plan{}, ErrNoRoute},
		{"domain rule does not match a login without @", "example.org", Plan{}, ErrNoRoute},
		{"domain pattern needs a domain part", "nodomain", Plan{}, ErrNoRoute},
		{"glob with subdomain", "y@mx.example.net",
			Plan{"y@mx.example.net", config.ModeRoute, "a", "mx.example.net", passthrough, config.VerifyUpstream, nil}, nil},
		{"no rule matches", "someone@else.test", Plan{}, ErrNoRoute},
		{"rule names an undefined upstream", "u@broken.test", Plan{}, errConfig},
		{"user names an undefined upstream", "ghost@nowhere.test", Plan{}, errConfig},
		{"merge user without accounts", "merge@example.com", Plan{}, errConfig},
		{"template expanding to empty", "@blank.test", Plan{}, ErrNoRoute},
		{"template not re-expanded", "{domain}@empty.test",
			Plan{"{domain}@empty.test", config.ModeRoute, "a", "empty.testxempty.test", passthrough, config.VerifyUpstream, nil}, nil},
		{"empty login", "", Plan{}, ErrBadLogin},
		{"space", "a b@example.com", Plan{}, ErrBadLogin},
		{"tab", "a\tb@example.com", Plan{}, ErrBadLogin},
		{"CRLF injection", "a@example.com\r\nA1 LOGOUT", Plan{}, ErrBadLogin},
		{"NUL", "a\x00@example.com", Plan{}, ErrBadLogin},
		{"DEL", "a\x7f@example.com", Plan{}, ErrBadLogin},
		{"C1 control", "a\u0085@example.com", Plan{}, ErrBadLogin},
		{"no-break space", "a\u00a0@example.com", Plan{}, ErrBadLogin},
		{"right-to-left override", "a\u202e@example.com", Plan{}, ErrBadLogin},
		{"invalid UTF-8", "a\xff@example.com", Plan{}, ErrBadLogin},
		{"too long", strings.Repeat("a", 245) + "@example.com", Plan{}, ErrBadLogin},
		{"longest allowed", strings.Repeat("a", 244) + "@example.com",
			Plan{strings.Repeat("a", 244) + "@example.com", config.ModeRoute, "b", strings.Repeat("a", 244), passthrough, config.VerifyUpstream, nil}, nil},
		{"non-ASCII compares exactly", "zoë@example.com",
			Plan{"zoë@example.com", config.ModeRoute, "b", "zoë", passthrough, config.VerifyUpstream, nil}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Plan(tt.login)
			switch {
			case tt.err == nil:
				if err != nil {
					t.Fatalf("Plan(%q) error %v", tt.login, err)
				}
				if got != tt.want {
					t.Fatalf("Plan(%q)\n got %+v\nwant %+v", tt.login, got, tt.want)
				}
			case tt.err == errConfig:
				if err == nil || errors.Is(err, ErrNoRoute) {
					t.Fatalf("Plan(%q) = %+v, %v; want a configuration error", tt.login, got, err)
				}
			default:
				if !errors.Is(err, tt.err) {
					t.Fatalf("Plan(%q) = %+v, %v; want %v", tt.login, got, err, tt.err)
				}
				if got != (Plan{}) {
					t.Fatalf("Plan(%q) returned %+v with an error", tt.login, got)
				}
			}
		})
	}
}

// errConfig marks cases that must fail with an error other than ErrNoRoute.
var errConfig = errors.New("configuration error")

func TestBadLoginIsNoRoute(t *testing.T) {
	if !errors.Is(ErrBadLogin, ErrNoRoute) {
		t.Fatal("ErrBadLogin does not wrap ErrNoRoute")
	}
}

func TestVerifiedByUpstream(t *testing.T) {
	r := New(testConfig())
	tests := []struct {
		login string
		want  bool
	}{
		{"alice@example.com", false}, // proxy holds a hash
		{"carol@example.com", false}, // hash, upstream from rules
		{"bob@example.com", true},    // listed, no hash
		{"BOB@example.com", true},
		{"zed@example.com", true},   // unlisted, verify=upstream rule
		{"x@example.org", true},     // explicit verify=upstream
		{"zed@corp.test", false},    // verify=proxy rule
		{"dave@corp.test", false},   // listed without hash under a verify=proxy rule
		{"nobody@none.test", false}, // no route
		{"bad login@example.com", false},
		{"ghost@nowhere.test", false}, // broken config
	}
	for _, tt := range tests {
		if got := r.VerifiedByUpstream(tt.login); got != tt.want {
			t.Errorf("VerifiedByUpstream(%q) = %v, want %v", tt.login, got, tt.want)
		}
	}
}

func TestUserPrecedenceOverRules(t *testing.T) {
	cfg := &config.Config{
		Upstreams: []config.Upstream{{Name: "rule"}, {Name: "user"}},
		Users:     []config.User{{Name: "a@x.test", Upstream: "user"}},
		Routes:    []config.Route{{Match: "*", Upstream: "rule"}, {Match: "x.test", Upstream: "rule"}},
	}
	p, err := New(cfg).Plan("a@x.test")
	if err != nil || p.Upstream != "user" {
		t.Fatalf("Plan = %+v, %v; want the user's upstream", p, err)
	}
}

func TestFirstDuplicateUserWins(t *testing.T) {
	cfg := &config.Config{
		Upstreams: []config.Upstream{{Name: "one"}, {Name: "two"}},
		Users:     []config.User{{Name: "a@x.test", Upstream: "one"}, {Name: "A@X.TEST", Upstream: "two"}},
	}
	p, err := New(cfg).Plan("a@x.test")
	if err != nil || p.Upstream != "one" {
		t.Fatalf("Plan = %+v, %v; want the first entry", p, err)
	}
}

func TestNewCopiesConfig(t *testing.T) {
	cfg := testConfig()
	r := New(cfg)
	cfg.Users[0].Upstream = "b"
	cfg.Routes[2].Upstream = "c"
	if p, _ := r.Plan("alice@example.com"); p.Upstream != "a" {
		t.Fatalf("user change leaked into the router: %+v", p)
	}
	if p, _ := r.Plan("zed@example.com"); p.Upstream != "b" {
		t.Fatalf("route change leaked into the router: %+v", p)
	}
}

func TestNilAndEmptyConfig(t *testing.T) {
	for _, cfg := range []*config.Config{nil, {}} {
		if _, err := New(cfg).Plan("a@x.test"); !errors.Is(err, ErrNoRoute) {
			t.Fatalf("Plan on empty config: %v, want ErrNoRoute", err)
		}
	}
}

func TestPlanVerifiedAndPolicy(t *testing.T) {
	cfg := &config.Config{
		Upstreams: []config.Upstream{{Name: "a"}, {Name: "b"}},
		Users: []config.User{
			{Name: "carol", PasswordHash: "h", Upstream: "b", Require2FA: true, TOTPGrace: config.Duration(time.Hour)},
		},
		Routes: []config.Route{
			{Match: "*@proxy.test", Upstream: "a", Username: "{local}", Verify: config.VerifyProxy, TOTPGrace: config.Duration(time.Minute)},
			{Match: "*", Upstream: "b", Verify: config.VerifyUpstream, Require2FA: true},
		},
	}
	r := New(cfg)
	// A store user under a verify=proxy rule: Plan refuses, PlanVerified routes.
	if _, err := r.Plan("dave@proxy.test"); err == nil {
		t.Fatalf("Plan admitted an unlisted login under a verify=proxy rule")
	}
	p, err := r.PlanVerified("dave@proxy.test")
	if err != nil || p.Upstream != "a" || p.UpstreamUser != "dave" || p.Verify != config.VerifyProxy {
		t.Fatalf("PlanVerified = %+v, %v", p, err)
	}
	if p, err := r.PlanVerified("carol"); err != nil || p.Upstream != "b" {
		t.Fatalf("PlanVerified(carol) = %+v, %v", p, err)
	}
	for _, tt := range []struct {
		login   string
		require bool
		grace   time.Duration
	}{
		{"carol", true, time.Hour},
		{"dave@proxy.test", false, time.Minute},
		{"eve@else.test", true, 0},
	} {
		req, grace := r.Policy(tt.login)
		if req != tt.require || grace.D() != tt.grace {
			t.Errorf("Policy(%s) = %v, %v; want %v, %v", tt.login, req, grace, tt.require, tt.grace)
		}
	}
	cfg.Auth.Require2FA = true
	if req, _ := New(cfg).Policy("dave@proxy.test"); !req {
		t.Errorf("global require_2fa not applied")
	}
}

func TestPlanMerge(t *testing.T) {
	cfg := &config.Config{
		Upstreams: []config.Upstream{{Name: "a"}, {Name: "b"}},
		Users: []config.User{
			{Name: "Mia", PasswordHash: "h", Mode: config.ModeMerge, UnifiedInbox: true,
				UnifiedSpecialUse: []string{`\Sent`}, DefaultAccount: "work",
				Accounts: []config.Account{
					{Name: "work", Upstream: "a", Prefix: "Work", Password: envSecret},
					{Name: "home", Upstream: "b", Username: "mia-home", Prefix: "Home"},
				}},
			{Name: "ned", Mode: config.ModeMerge, Accounts: []config.Account{
				{Name: "one", Upstream: "a"}, {Name: "two", Upstream: "b", Prefix: "Two"},
			}},
			{Name: "broken", Mode: config.ModeMerge, Accounts: []config.Account{{Name: "x", Upstream: "missing"}}},
		},
		// A rule matching everything must not turn merge users into routes.
		Routes: []config.Route{{Match: "*", Upstream: "a"}},
	}
	r := New(cfg)
	p, err := r.Plan("mia")
	if err != nil {
		t.Fatalf("Plan(mia): %v", err)
	}
	want := &MergePlan{
		Accounts: []MergeAccount{
			{Name: "work", Upstream: "a", Username: "Mia", Password: envSecret, Prefix: "Work"},
			{Name: "home", Upstream: "b", Username: "mia-home", Password: passthrough, Prefix: "Home"},
		},
		UnifiedInbox: true, UnifiedSpecialUse: []string{`\Sent`}, DefaultAccount: "work",
	}
	if p.User != "Mia" || p.Mode != config.ModeMerge || p.Verify != config.VerifyProxy || p.Upstream != "" || p.Merge == nil {
		t.Fatalf("Plan(mia) = %+v", p)
	}
	if !reflect.DeepEqual(p.Merge, want) {
		t.Fatalf("Plan(mia).Merge\n got %+v\nwant %+v", p.Merge, want)
	}
	// The plan does not share the configuration's slices.
	cfg.Users[0].UnifiedSpecialUse[0] = `\Junk`
	if p.Merge.UnifiedSpecialUse[0] != `\Sent` {
		t.Errorf("plan shares the configuration's unified_special_use")
	}

	p, err = r.Plan("ned")
	if err != nil || p.Mode != config.ModeMerge || p.Verify != config.VerifyUpstream ||
		len(p.Merge.Accounts) != 2 || p.Merge.Accounts[0].Username != "ned" || p.Merge.Accounts[0].Prefix != "" {
		t.Fatalf("Plan(ned) = %+v, %v", p, err)
	}
	if !r.VerifiedByUpstream("ned") {
		t.Errorf("a merge user without a hash is not verified by the upstream")
	}
	p, err = r.PlanVerified("ned")
	if err != nil || p.Mode != config.ModeMerge || p.Verify != config.VerifyProxy {
		t.Fatalf("PlanVerified(ned) = %+v, %v", p, err)
	}
	if _, err := r.Plan("broken"); err == nil || errors.Is(err, ErrNoRoute) {
		t.Fatalf("Plan(broken) = %v, want a configuration error", err)
	}
}
