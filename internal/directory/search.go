package directory

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/store"
)

// search serves a SearchRequest: entries, then SearchResultDone. Stored
// entries are selected by the store (the filter compiled to SQL, with the
// principal's visibility and the scope as further conditions); the root
// DSE, the schema and the containers are constant entries. With the paged
// results control, a page at a time.
func (ss *session) search(ctx context.Context, id int64, r *searchRequest, controls []control) bool {
	var page *pagedControl
	var sortKeys []sortKey
	sortCritical := false
	for _, c := range controls {
		var err error
		switch c.oid {
		case oidPagedResults:
			var p pagedControl
			p, err = decodePaged(c)
			page = &p
		case oidSortRequest:
			sortKeys, err = decodeSort(c)
			sortCritical = c.critical
		}
		if err != nil {
			return ss.respond(id, resultOp(opSearchDone, result{code: resultProtocolError, diagnostic: err.Error()}))
		}
	}
	done := func(code resultCode, why string) bool {
		return ss.respondResult(id, opSearchDone, result{code: code, diagnostic: why})
	}
	base, err := ParseDN(r.base)
	if err != nil {
		return done(resultInvalidDNSyntax, err.Error())
	}
	if len(base) == 0 && r.scope == scopeBase {
		return ss.sendConstant(id, r, ss.rootDSE(), done)
	}
	if ss.who == nil {
		// Anonymous sessions see the root DSE and nothing else.
		return done(resultInsufficientAccessRights, "bind first: anonymous sessions read only the root DSE")
	}
	if base.Equal(DN{{{Type: "cn", Value: "subschema"}}}) {
		if r.scope != scopeBase {
			return done(resultSuccess, "") // the subschema entry has no children
		}
		return ss.sendConstant(id, r, subschema(), done)
	}
	state := &pageState{}
	if page != nil { // only a paged search is named, for its cookies
		state.search = searchKey(r, sortKeys)
	}
	if page != nil && page.cookie != "" {
		var ok bool
		if state, ok = ss.resume(page.cookie, state.search); !ok {
			return done(resultUnwillingToPerform, "the paging cookie is not one this connection handed out for this search, or it was used already")
		}
		if page.size == 0 { // RFC 2696 §3: size 0 abandons the paged search
			return ss.respond(id, resultOp(opSearchDone, result{code: resultSuccess}), pagedResponse(""))
		}
	}
	sel := newSelection(r.attributes)
	plan, err := ss.plan(ctx, base, r.scope, sel)
	switch {
	case errors.Is(err, errNoSuchObject), errors.Is(err, store.ErrNotFound):
		// What the principal may not see does not exist for it.
		return done(resultNoSuchObject, "")
	case err != nil:
		ss.log.Error("ldap: search", "base", r.base, "err", err)
		return done(resultOther, "the directory could not search; try again later")
	}
	ord := order{by: "id"}
	var doneControls []*ber.Packet
	if sortKeys != nil {
		o, why := sortOrder(plan, sortKeys)
		switch {
		case why == resultSuccess:
			ord = o
			ord.offset = state.offset
		case sortCritical:
			return done(resultUnavailableCriticalExtension, "the directory sorts one kind of entry by one single-valued attribute")
		}
		doneControls = append(doneControls, sortResponse(why, ""))
	}
	lim := ss.s.opts.Limits
	// The server's limit bounds one answer: a page, or the whole search.
	pageSize := lim.SizeLimit
	if page != nil && page.size > 0 && int(page.size) < pageSize {
		pageSize = int(page.size)
	}
	total := int(r.sizeLimit) // the client's limit, over every page; 0: none
	if page == nil && total > 0 && total < pageSize {
		pageSize = total
	}
	wait := lim.TimeLimit
	if r.timeLimit > 0 && time.Duration(r.timeLimit)*time.Second < wait {
		wait = time.Duration(r.timeLimit) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	inPage, more := 0, false
	send := func(e entry) bool {
		inPage++
		state.sent++
		return ss.sendEntry(id, e, sel, r.typesOnly)
	}
steps:
	for ; state.step < len(plan); state.step++ {
		step := plan[state.step]
		c, err := compileFilter(ctx, step.schema, r.filter)
		if err == nil && step.query == nil {
			if c.isT && c.constT {
				if inPage == pageSize {
					more = true
					break steps
				}
				if !send(step.constant) {
					return false
				}
			}
			continue
		}
		filter := c.tSide()
		if state.after != "" && ord.by == "id" {
			filter = and(filter, side{e: store.Compare{Field: "id", Op: store.OpGt, Value: state.after}})
		}
		var entries []entry
		if err == nil {
			entries, err = step.query(ctx, filter, pageSize-inPage+1, ord)
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return done(resultTimeLimitExceeded, "")
		case err != nil:
			ss.log.Error("ldap: search", "base", r.base, "filter", r.filter.String(), "err", err)
			return done(resultOther, "the directory could not search; try again later")
		}
		for _, e := range entries {
			if inPage == pageSize {
				more = true
				break steps
			}
			if total > 0 && state.sent == total {
				return done(resultSizeLimitExceeded, "")
			}
			if !send(e) {
				return false
			}
			state.after = e.id
			state.offset++
			ord.offset++
		}
		state.after, state.offset, ord.offset = "", 0, 0
	}
	switch {
	case page != nil && more:
		doneControls = append(doneControls, pagedResponse(ss.park(state)))
	case page != nil:
		doneControls = append(doneControls, pagedResponse(""))
	case more:
		return ss.respond(id, resultOp(opSearchDone, result{code: resultSizeLimitExceeded}), doneControls...)
	case len(doneControls) == 0:
		return done(resultSuccess, "")
	}
	return ss.respond(id, resultOp(opSearchDone, result{code: resultSuccess}), doneControls...)
}

// sendConstant answers a base search of a constant entry.
func (ss *session) sendConstant(id int64, r *searchRequest, e entry, done func(resultCode, string) bool) bool {
	c, err := compileFilter(context.Background(), container{e}, r.filter)
	if err == nil && c.isT && c.constT {
		if !ss.sendEntry(id, e, newSelection(r.attributes), r.typesOnly) {
			return false
		}
	}
	return done(resultSuccess, "")
}

// planStep is one part of a search: a constant entry, or a query of one
// stored kind that returns at most max entries satisfying the filter.
type planStep struct {
	schema   schemaOf
	constant entry
	query    func(ctx context.Context, filter side, max int, o order) ([]entry, error)
}

// plan is what a search of base with scope reads, in order; the stored
// entries have the attributes sel wants (and perhaps others).
func (ss *session) plan(ctx context.Context, base DN, scope int64, sel *selection) ([]planStep, error) {
	s := ss.s
	n, err := s.locate(base)
	if err != nil {
		return nil, err
	}
	people, devices, groups := s.people, s.devices, s.groups
	constant := constantStep
	kinds := map[string]planStep{
		ouPeople:  ss.stored(people, ss.visibleUsers(), sel, s.userList),
		ouDevices: ss.stored(devices, ss.visibleThings(), sel, s.thingList),
		ouGroups:  ss.stored(groups, ss.visibleGroups(), sel, s.groupList),
	}
	services := ss.visibleServices()
	// below is what a subtree search of the container ou reads after it.
	below := func(ou string) []planStep {
		if ou != ouServices {
			return []planStep{kinds[ou]}
		}
		var plan []planStep
		for _, id := range services {
			plan = append(plan, constant(s.serviceEntry(id)))
		}
		return plan
	}
	switch n.kind {
	case "base":
		var plan []planStep
		if scope == scopeBase || scope == scopeSubtree {
			plan = append(plan, constant(s.baseEntry()))
		}
		if scope == scopeBase {
			return plan, nil
		}
		for _, ou := range containers {
			plan = append(plan, constant(s.ouEntry(ou)))
		}
		if scope == scopeOne {
			return plan, nil
		}
		for _, ou := range containers {
			plan = append(plan, below(ou)...)
		}
		return plan, nil
	case "ou":
		switch scope {
		case scopeBase:
			return []planStep{constant(s.ouEntry(n.ou))}, nil
		case scopeSubtree:
			return append([]planStep{constant(s.ouEntry(n.ou))}, below(n.ou)...), nil
		}
		return below(n.ou), nil
	case "service":
		if !slices.Contains(services, n.name) {
			return nil, errNoSuchObject
		}
		if scope == scopeOne || scope == scopeChildren {
			return nil, nil
		}
		return []planStep{constant(s.serviceEntry(n.name))}, nil
	}
	// One stored entry: it must exist for the principal, whatever the
	// filter, or the base is noSuchObject.
	one := kinds[map[string]string{"user": ouPeople, "thing": ouDevices, "group": ouGroups}[n.kind]]
	restrict := side{e: named(n)}
	exists, err := one.query(ctx, restrict, 1, order{by: "id"})
	if err != nil {
		return nil, err
	}
	if len(exists) == 0 {
		return nil, errNoSuchObject
	}
	if scope == scopeOne || scope == scopeChildren {
		return nil, nil // entries have no children
	}
	q := one.query
	one.query = func(ctx context.Context, filter side, max int, o order) ([]entry, error) {
		return q(ctx, and(restrict, filter), max, o)
	}
	return []planStep{one}, nil
}

// named is the condition that selects the one stored entry n names.
func named(n node) store.Expr {
	switch n.kind {
	case "user":
		return store.Compare{Field: "userName", Op: store.OpEq, Value: n.name}
	case "thing":
		return store.Compare{Field: "id", Op: store.OpEq, Value: n.name}
	}
	return store.Compare{Field: "displayName", Op: store.OpEq, Value: n.name}
}

// stored is the plan step of a stored kind: the filter and the principal's
// visibility, at most max entries, in id order, with what sel wants.
func (ss *session) stored(k *storedKind, visible side, sel *selection, list func(context.Context, store.Query, *selection) ([]entry, error)) planStep {
	return planStep{schema: k, query: func(ctx context.Context, filter side, max int, o order) ([]entry, error) {
		where := and(visible, filter)
		if where.is && !where.v {
			return nil, nil
		}
		// LDAP never says how many entries match: no COUNT.
		return list(ctx, store.Query{Filter: where.e, SortBy: o.by, Descending: o.desc, Offset: o.offset, Limit: max, NoTotal: true}, sel)
	}}
}

// visibleUsers: administrators see every person, a user itself, a thing none,
// a service account all when its configuration grants ou=people.
func (ss *session) visibleUsers() side {
	switch who := ss.who; {
	case who.admin:
		return side{v: true, is: true}
	case who.userID != "":
		return side{e: store.Compare{Field: "id", Op: store.OpEq, Value: who.userID}}
	case who.service != "":
		return side{v: who.reads[ouPeople], is: true}
	}
	return side{v: false, is: true}
}

// visibleThings: administrators see every thing, a user the things it
// owns, a thing itself, a service account all when granted ou=devices.
func (ss *session) visibleThings() side {
	switch who := ss.who; {
	case who.admin:
		return side{v: true, is: true}
	case who.userID != "":
		return side{e: store.Compare{Field: "owners", Op: store.OpEq, Value: who.userID}}
	case who.service != "":
		return side{v: who.reads[ouDevices], is: true}
	}
	return side{e: store.Compare{Field: "id", Op: store.OpEq, Value: ss.who.thingID}}
}

// visibleServices are the service accounts the principal reads, in
// order: administrators all, a service account itself.
func (ss *session) visibleServices() []string {
	switch who := ss.who; {
	case who.admin:
		return slices.Sorted(maps.Keys(ss.s.opts.ServiceAccounts))
	case who.service != "":
		return []string{who.service}
	}
	return nil
}

// visibleGroups: groups are the administrators', and service accounts'
// granted ou=groups.
func (ss *session) visibleGroups() side {
	return side{v: ss.who.admin || ss.who.reads[ouGroups], is: true}
}

// rootDSE is the root DSE (RFC 4512 §5.1); all its attributes but
// objectClass are operational.
func (ss *session) rootDSE() entry {
	return entry{dn: "", attrs: []attribute{
		{"objectClass", []string{"top", "extensibleObject"}},
		{"namingContexts", []string{ss.s.base.String()}},
		{"subschemaSubentry", []string{subschemaDN}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedControl", supportedControls},
		{"supportedExtension", []string{oidStartTLS, oidWhoAmI, oidPasswordModify}},
		{"supportedSASLMechanisms", []string{"EXTERNAL"}},
		{"vendorName", []string{"thingid"}},
	}}
}

// selection is the attributes a search asks for (RFC 4511 §4.5.1.8):
// none listed, or "*", means every user attribute; "+" every operational
// one (RFC 3673); "1.1" alone none; other names (or OIDs) those
// attributes. Attributes without values are never sent. It is worked out
// once per search, not per entry.
type selection struct {
	all, ops bool
	types    map[*attributeType]bool // named types
	names    map[string]bool         // named attributes the schema does not know, lower-cased
}

func newSelection(want []string) *selection {
	sel := &selection{all: len(want) == 0, types: map[*attributeType]bool{}, names: map[string]bool{}}
	for _, w := range want {
		switch w = strings.ToLower(w); w {
		case "*":
			sel.all = true
		case "+":
			sel.ops = true
		default:
			if t := attributes[w]; t != nil {
				sel.types[t] = true
			} else {
				sel.names[w] = true
			}
		}
	}
	return sel
}

// keeps says whether a is sent.
func (sel *selection) keeps(a attribute) bool { return len(a.values) > 0 && sel.wants(a.name) }

// wants says whether the attribute named name is sent when it has values:
// what an entry refers to is read only then.
func (sel *selection) wants(name string) bool {
	t := typeOf(name)
	if t == nil {
		return sel.all || sel.names[strings.ToLower(name)]
	}
	return sel.types[t] || (sel.all && !t.operational) || (sel.ops && t.operational)
}
