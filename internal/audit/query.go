package audit

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// The query parameters of GET /api/v1/admin/audit; `thingid audit` takes the
// same as flags.
const (
	ParamActor       = "actor"
	ParamAction      = "action"
	ParamSubject     = "subject"
	ParamSubjectKind = "subjectKind"
	ParamSince       = "since"
	ParamUntil       = "until"
	ParamLimit       = "limit"
	ParamOrder       = "order"
	ParamCursor      = "cursor"
)

var params = []string{ParamActor, ParamAction, ParamSubject, ParamSubjectKind, ParamSince, ParamUntil, ParamLimit, ParamOrder, ParamCursor}

// Orders of a query.
const (
	OrderNewest = "newest" // newest first, the default
	OrderOldest = "oldest" // in the order records were appended
)

// maxText bounds a text filter, in characters.
const maxText = 256

// FieldError is a bad parameter of a query: Field names it. Error() is
// English (the API's answer); a page translates it (ui.Refusal).
type FieldError struct{ refusal.FieldError }

func bad(field, format string, args ...any) error {
	return &FieldError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

// ParseFilter reads a Filter from query parameters (actor, action, subject,
// subjectKind, since, until); others are the caller's. An empty parameter is
// no filter. A value ending in "*" matches as a prefix: action=uma.* selects
// "uma.share.create" and "uma.rpt.issue".
func ParseFilter(v url.Values) (Filter, error) {
	var f Filter
	var err error
	if f.Actor, err = match(v, ParamActor); err != nil {
		return f, err
	}
	if f.Action, err = match(v, ParamAction); err != nil {
		return f, err
	}
	if f.Subject, err = text(v, ParamSubject); err != nil {
		return f, err
	}
	kind, err := text(v, ParamSubjectKind)
	if err != nil {
		return f, err
	}
	if kind != "" && f.Subject == "" {
		return f, bad(ParamSubjectKind, "narrows subject to one kind; give subject too")
	}
	f.SubjectKind = store.Kind(kind)
	if f.Since, err = timeParam(v, ParamSince); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(v, ParamUntil); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, bad(ParamUntil, "must be later than since")
	}
	return f, nil
}

// Values is f as query parameters, the canonical form ParseFilter reads back
// into an equal Filter.
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	matchText := func(m store.TextMatch) string {
		if m.Prefix && m.Value != "" {
			return m.Value + "*"
		}
		return m.Value
	}
	set(ParamActor, matchText(f.Actor))
	set(ParamAction, matchText(f.Action))
	set(ParamSubject, f.Subject)
	set(ParamSubjectKind, string(f.SubjectKind))
	if !f.Since.IsZero() {
		v.Set(ParamSince, f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		v.Set(ParamUntil, f.Until.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// one returns the single value of parameter k, "" when absent.
func one(v url.Values, k string) (string, error) {
	switch vs := v[k]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", bad(k, "given more than once; give it once")
}

// text reads a text filter: valid UTF-8, printable, at most maxText
// characters, no "*".
func text(v url.Values, k string) (string, error) {
	s, err := one(v, k)
	if err != nil || s == "" {
		return "", err
	}
	switch {
	case !utf8.ValidString(s):
		return "", bad(k, "is not valid UTF-8")
	case utf8.RuneCountInString(s) > maxText:
		return "", bad(k, "is longer than %d characters", maxText)
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0:
		return "", bad(k, "contains a control or invisible character")
	}
	if strings.Contains(s, "*") && k != ParamActor && k != ParamAction {
		return "", bad(k, "matches exactly; * is not a wildcard here")
	}
	return s, nil
}

// match reads a text filter that may end in "*" (a prefix).
func match(v url.Values, k string) (store.TextMatch, error) {
	s, err := text(v, k)
	if err != nil || s == "" {
		return store.TextMatch{}, err
	}
	m := store.TextMatch{Value: s}
	if m.Prefix = strings.HasSuffix(s, "*"); m.Prefix {
		m.Value = strings.TrimSuffix(s, "*")
	}
	if strings.Contains(m.Value, "*") {
		return store.TextMatch{}, bad(k, "a * may only end the value (%s=uma.* selects every action starting with uma.)", k)
	}
	if m.Prefix && m.Value == "" {
		return store.TextMatch{}, nil // "*" alone: every value, as no filter
	}
	return m, nil
}

func timeParam(v url.Values, k string) (time.Time, error) {
	s, err := one(v, k)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, bad(k, "%q is not an RFC 3339 time such as 2025-06-01T12:00:00Z", truncate(s))
	}
	return t, nil
}

// ParseQuery reads a whole query (the filter, limit, order and cursor) and
// refuses parameters it does not know, so that a misspelt filter is an
// error rather than every record. key checks the cursor.
func ParseQuery(v url.Values, key []byte) (Query, error) {
	for k := range v {
		if !slices.Contains(params, k) {
			return Query{}, bad(k, "unknown parameter; the parameters are %s", strings.Join(params, ", "))
		}
	}
	f, err := ParseFilter(v)
	if err != nil {
		return Query{}, err
	}
	q := Query{Filter: f, Limit: DefaultLimit}
	if s, err := one(v, ParamLimit); err != nil {
		return q, err
	} else if s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, bad(ParamLimit, "%q: want a whole number from 1 to %d", truncate(s), MaxLimit)
		}
		q.Limit = n
	}
	order, err := one(v, ParamOrder)
	if err != nil {
		return q, err
	}
	switch order {
	case "", OrderNewest:
	case OrderOldest:
		q.OldestFirst = true
	default:
		return q, bad(ParamOrder, "%q: want %s (the default) or %s", truncate(order), OrderNewest, OrderOldest)
	}
	c, err := one(v, ParamCursor)
	if err != nil || c == "" {
		return q, err
	}
	oldest, from, err := decodeCursor(key, f, c)
	if err != nil {
		return q, err
	}
	if order != "" && oldest != q.OldestFirst {
		return q, bad(ParamOrder, "%q is not the order the cursor was issued for; leave order out to continue", order)
	}
	q.OldestFirst, q.From = oldest, from
	return q, nil
}

// truncate shortens input quoted back in an error.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	i := 64
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
