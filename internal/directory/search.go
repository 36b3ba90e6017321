package directory

import (
	"slices"
	"strings"
)

// search serves a SearchRequest: entries, then SearchResultDone.
func (ss *session) search(id int64, r *searchRequest) bool {
	done := func(code resultCode, why string) bool {
		return ss.respond(id, resultOp(opSearchDone, result{code: code, diagnostic: why}))
	}
	if strings.TrimSpace(r.base) == "" && r.scope == scopeBase {
		if matchesObjectClass(r.filter) {
			if !ss.respond(id, entryOp(select_(ss.rootDSE(), r.attributes), r.typesOnly)) {
				return false
			}
		}
		return done(resultSuccess, "")
	}
	if _, err := ParseDN(r.base); err != nil {
		return done(resultInvalidDNSyntax, err.Error())
	}
	if ss.who == "" {
		// Anonymous sessions see the rootDSE and nothing else.
		return done(resultInsufficientAccessRights, "bind first: anonymous sessions read only the root DSE")
	}
	return done(resultNoSuchObject, "")
}

// matchesObjectClass reports whether f is the filter clients send to read
// one known entry: (objectClass=*), or an equality on an object class of it.
func matchesObjectClass(f *filter) bool {
	return f.kind == filterPresent && f.attr == "objectclass"
}

// rootDSE is the root DSE (RFC 4512 §5.1).
func (ss *session) rootDSE() entry {
	return entry{dn: "", attrs: []attribute{
		{"objectClass", []string{"top", "extensibleObject"}},
		{"namingContexts", []string{ss.s.base.String()}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedControl", supportedControls},
		{"supportedExtension", []string{oidStartTLS, oidWhoAmI}},
		{"vendorName", []string{"thingid"}},
	}}
}

// select_ keeps the attributes asked for (RFC 4511 §4.5.1.8): none listed
// or "*" means every user attribute; "1.1" alone means none. Operational
// attributes ("+") are the rootDSE's own: it has only those.
func select_(e entry, want []string) entry {
	if len(want) == 0 || slices.Contains(want, "*") || slices.Contains(want, "+") {
		return e
	}
	out := entry{dn: e.dn}
	for _, a := range e.attrs {
		if slices.ContainsFunc(want, func(w string) bool { return strings.EqualFold(w, a.name) }) {
			out.attrs = append(out.attrs, a)
		}
	}
	return out
}
