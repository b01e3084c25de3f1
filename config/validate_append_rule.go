package config

import (
	"strings"
	"unicode"
)

// appendRules checks a merge user's [[user.append_rule]] entries and
// lowers their addresses. names maps each folded account name to its
// index.
func (v *validator) appendRules(u *User, at keyPath, names map[string]int) {
	if len(u.AppendRules) > 0 && !u.UnifiedInbox && len(u.UnifiedSpecialUse) == 0 {
		v.addf(at.with("append_rule"), "has no effect without unified_inbox or unified_special_use: "+
			"a message appended to an account's folder stays in that account")
	}
	for i := range u.AppendRules {
		r := &u.AppendRules[i]
		p := at.with("append_rule", i)
		switch {
		case r.Account == "":
			v.addf(p.with("account"), "required")
		default:
			if _, ok := names[strings.ToLower(r.Account)]; !ok {
				v.addf(p.with("account"), "%s is not the name of one of the user's accounts", quoteShort(r.Account))
			}
		}
		if len(r.From) == 0 && len(r.To) == 0 {
			v.addf(p, "needs from or to (or both): a rule without addresses would match every message")
		}
		v.ruleAddresses(p.with("from"), r.From)
		v.ruleAddresses(p.with("to"), r.To)
	}
}

// ruleAddresses checks and lowers the entries of an append rule's from or
// to list.
func (v *validator) ruleAddresses(at keyPath, list []string) {
	for j, a := range list {
		if err := checkRuleAddress(a); err != "" {
			v.addf(at.with(j), "%s %s", quoteShort(a), err)
			continue
		}
		list[j] = strings.ToLower(a)
	}
}

// checkRuleAddress says what is wrong with an append rule's address
// entry, "" when nothing is: it is "local@domain" or "@domain", with no
// space, control character or angle bracket.
func checkRuleAddress(a string) string {
	_, domain, ok := strings.Cut(a, "@")
	switch {
	case !ok:
		return `is neither an address ("name@example.com") nor a domain ("@example.com")`
	case strings.Contains(domain, "@"):
		return `has more than one "@"`
	case domain == "" || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, "."):
		return "lacks a domain after the @"
	case strings.IndexFunc(a, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "contains a space or a control character"
	case strings.ContainsAny(a, "<>,;"):
		return `contains one of "<>,;": write the bare address`
	}
	return ""
}
