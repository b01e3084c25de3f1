package config

import (
	"fmt"
	"strings"
	"unicode"
)

// SpecialUses are the special uses (RFC 6154) whose folders a merge user
// can unify across accounts, in their normalized form.
var SpecialUses = []string{`\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`}

// NormalizeSpecialUse returns the normalized form of a special use written
// with or without its backslash and in any case ("sent", "\SENT" → "\Sent"),
// and false when s is none of SpecialUses.
func NormalizeSpecialUse(s string) (string, bool) {
	s = strings.TrimPrefix(s, `\`)
	for _, use := range SpecialUses {
		if strings.EqualFold(s, use[1:]) {
			return use, true
		}
	}
	return "", false
}

// UnifiedFolderName is the top-level folder name of a unified special use:
// "Sent" for "\Sent". use must be normalized.
func UnifiedFolderName(use string) string { return strings.TrimPrefix(use, `\`) }

// CheckPrefix checks an account prefix, the folder a merge user's account
// is mounted under. The empty prefix (the primary account) is valid. A
// prefix is one folder name: no "/" (the proxy's hierarchy delimiter, so
// one prefix can never be another's parent or child), no leading or
// trailing space, no control characters, no LIST wildcards ("*", "%"), and
// not INBOX in any case.
func CheckPrefix(p string) error {
	switch {
	case p == "":
		return nil
	case strings.Contains(p, "/"):
		return fmt.Errorf(`%s contains "/", the proxy's hierarchy delimiter: a prefix is one folder name`, quoteShort(p))
	case strings.EqualFold(p, "INBOX"):
		return fmt.Errorf("%s is INBOX, which always stands at the top level", quoteShort(p))
	case strings.ContainsAny(p, "*%"):
		return fmt.Errorf(`%s contains a LIST wildcard ("*" or "%%")`, quoteShort(p))
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("%s contains a control character", quoteShort(p))
	case strings.TrimSpace(p) != p:
		return fmt.Errorf("%s starts or ends with a space", quoteShort(p))
	}
	return nil
}

// notMerge checks that a user who is not in merge mode uses none of the
// merge-only keys.
func (v *validator) notMerge(u *User, at keyPath) {
	const msg = `only for mode = "merge"`
	if len(u.Accounts) > 0 {
		v.addf(at.with("account"), msg)
	}
	if u.UnifiedInbox {
		v.addf(at.with("unified_inbox"), msg)
	}
	if len(u.UnifiedSpecialUse) > 0 {
		v.addf(at.with("unified_special_use"), msg)
	}
	if u.DefaultAccount != "" {
		v.addf(at.with("default_account"), msg)
	}
	if len(u.AppendRules) > 0 {
		v.addf(at.with("append_rule"), msg)
	}
}

// mergeUser checks a merge-mode user and its [[user.account]] entries, and
// normalizes unified_special_use.
func (v *validator) mergeUser(u *User, at keyPath, proxyChecks bool) {
	if u.Upstream != "" {
		v.addf(at.with("upstream"), `not used by mode = "merge": each [[user.account]] names its upstream`)
	}
	if u.UpstreamUser != "" && u.UpstreamUser != u.Name {
		v.addf(at.with("upstream_user"), `not used by mode = "merge": each [[user.account]] has its own username`)
	}
	if err := u.UpstreamPassword.check(); err != nil {
		v.add(at.with("upstream_password"), err)
	} else if !u.UpstreamPassword.IsPassthrough() {
		v.addf(at.with("upstream_password"), `not used by mode = "merge": each [[user.account]] has its own password`)
	}
	if len(u.Accounts) == 0 {
		v.addf(at.with("account"), `mode = "merge" needs at least one [[user.account]]`)
	}

	unified := make(map[string]bool) // folded folder name of each unified use
	for j, s := range u.UnifiedSpecialUse {
		p := at.with("unified_special_use", j)
		use, ok := NormalizeSpecialUse(s)
		switch {
		case !ok:
			v.addf(p, "%s is not one of %s", quoteShort(s), strings.Join(SpecialUses, ", "))
		case unified[strings.ToLower(use)]:
			v.addf(p, "%s is listed twice", use)
		default:
			u.UnifiedSpecialUse[j] = use
			unified[strings.ToLower(use)] = true
		}
	}

	names := make(map[string]int)    // folded account name → index
	prefixes := make(map[string]int) // folded prefix → index
	for j := range u.Accounts {
		v.account(u, j, at.with("account", j), names, prefixes, unified, proxyChecks)
	}

	switch {
	case u.DefaultAccount != "":
		if _, ok := names[strings.ToLower(u.DefaultAccount)]; !ok {
			v.addf(at.with("default_account"), "%s is not the name of one of the user's accounts", quoteShort(u.DefaultAccount))
		}
	case u.UnifiedInbox || len(u.UnifiedSpecialUse) > 0:
		v.addf(at.with("default_account"), "required with unified_inbox or unified_special_use: "+
			"the account that receives messages appended to a unified folder")
	}
	v.appendRules(u, at, names)
}

// account checks user u's account j.
func (v *validator) account(u *User, j int, at keyPath, names, prefixes map[string]int, unified map[string]bool, proxyChecks bool) {
	a := &u.Accounts[j]
	switch k := strings.ToLower(a.Name); {
	case a.Name == "":
		v.addf(at.with("name"), "required")
	case strings.IndexFunc(a.Name, unicode.IsControl) >= 0:
		v.addf(at.with("name"), "%s contains a control character", quoteShort(a.Name))
	default:
		if i, dup := names[k]; dup {
			v.addf(at.with("name"), "%s is also account[%d].name", quoteShort(a.Name), i)
		} else {
			names[k] = j
		}
	}

	if a.Upstream == "" {
		v.addf(at.with("upstream"), "required")
	} else {
		v.upstreamRef(at.with("upstream"), a.Upstream)
	}

	if err := a.Password.check(); err != nil {
		v.add(at.with("password"), err)
	} else if !proxyChecks && !a.Password.IsPassthrough() {
		v.addf(at.with("password"), "must be passthrough when the user's password_hash is empty: "+
			"the upstreams are then the ones to check the client's password")
	}

	if err := CheckPrefix(a.Prefix); err != nil {
		v.add(at.with("prefix"), err)
		return
	}
	k := strings.ToLower(a.Prefix)
	if i, dup := prefixes[k]; dup {
		if a.Prefix == "" {
			v.addf(at.with("prefix"), "account[%d] has the empty prefix already: only one account can stand at the top level", i)
		} else {
			v.addf(at.with("prefix"), "%s is also account[%d].prefix (prefixes are compared without case)", quoteShort(a.Prefix), i)
		}
		return
	}
	prefixes[k] = j
	if use, ok := NormalizeSpecialUse(a.Prefix); ok && unified[strings.ToLower(use)] &&
		strings.EqualFold(a.Prefix, UnifiedFolderName(use)) {
		v.addf(at.with("prefix"), "%s is the name of the unified %s folder", quoteShort(a.Prefix), use)
	}
}
