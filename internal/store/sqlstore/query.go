package sqlstore

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/store"
)

// This file compiles store.Expr and the sort/paging of store.Query to SQL.
// Field names come from the catalogs in store/fields.go and map to fixed SQL
// below; every value from a query is a bind parameter, never SQL text.

// col is the SQL of one scalar field. Queries alias the main table as x.
type col struct {
	sql string
	// nullable: the expression can be NULL (a JSON path that may be absent);
	// columns are NOT NULL, which keeps their comparisons index-friendly.
	nullable bool
	// lowered: the column holds the value lower-cased by Go, so a
	// case-insensitive comparison needs no SQL lower() and can use its index.
	lowered bool
	// seek: the column is unique, or an index on (column, id) holds its
	// rows in id order, so an equality on it read in id order stops after
	// a page's rows (see seeks).
	seek bool
}

// multi is the SQL of one multi-valued field.
type multi struct {
	// wrap returns the boolean SQL "some element satisfies cond".
	wrap func(f Flavor, cond string) string
	// sub returns the SQL of the element's sub-field name (of type t).
	sub func(f Flavor, name string, t store.FieldType) col
	// index, when set, selects the ids whose lower-cased values equal a
	// value to follow: "<id column> FROM <table> WHERE <value column>".
	index string
}

// kindSQL maps one identity kind's field catalog to SQL.
type kindSQL struct {
	table   string
	catalog map[string]store.Field
	cols    map[string]func(f Flavor) col
	multis  map[string]multi
	// attributes: the kind has free "attributes.<name>" fields (things).
	attributes bool
	// byLower maps lower-cased field names to catalog names: SCIM attribute
	// names are case-insensitive (RFC 7643 §2.1).
	byLower map[string]string
}

func newKind(table string, catalog map[string]store.Field, cols map[string]func(Flavor) col, multis map[string]multi, attributes bool) *kindSQL {
	k := &kindSQL{table: table, catalog: catalog, cols: cols, multis: multis, attributes: attributes, byLower: map[string]string{}}
	for name, fd := range catalog {
		_, isCol := cols[name]
		_, isMulti := multis[name]
		if isCol == fd.Multi || isMulti != fd.Multi {
			panic("sqlstore: no SQL for catalog field " + table + "." + name)
		}
		k.byLower[strings.ToLower(name)] = name
	}
	return k
}

func column(name string) func(Flavor) col {
	c := col{sql: "x." + name} // once, not per filter compiled
	return func(Flavor) col { return c }
}

// seekColumn is a column whose equality seeks an index in id order.
func seekColumn(name string, lowered bool) func(Flavor) col {
	c := col{sql: "x." + name, lowered: lowered, seek: true}
	return func(Flavor) col { return c }
}

func docText(path ...string) func(Flavor) col {
	return func(f Flavor) col { return col{sql: f.jsonText("x.doc", path...), nullable: true} }
}

func docBool(path ...string) func(Flavor) col {
	return func(f Flavor) col { return col{sql: f.jsonBool("x.doc", path...), nullable: true} }
}

// docArray is a multi-valued field stored as a JSON array of MultiValue in doc.
func docArray(key string) multi {
	return multi{
		wrap: func(f Flavor, cond string) string {
			from, _ := f.jsonElements("x.doc", key)
			return "EXISTS (SELECT 1 FROM " + from + " WHERE " + cond + ")"
		},
		sub: func(f Flavor, name string, t store.FieldType) col {
			_, sub := f.jsonElements("x.doc", key)
			return col{sql: sub(name, t), nullable: true}
		},
	}
}

func withIndex(m multi, index string) multi {
	m.index = index
	return m
}

// edges is a multi-valued field made of relationships: self is the end ("from"
// or "to") that is the listed identity, other the end whose ID is the value.
// The non-correlated IN form lets the database drive the lookup from the
// relationships indexes when the filter is selective.
func edges(kind store.RelKind, self, selfKind, other string, otherKind store.Kind) multi {
	fixed := "r.kind = '" + string(kind) + "' AND r." + self + "_kind = '" + selfKind + "'"
	if otherKind != "" {
		fixed += " AND r." + other + "_kind = '" + string(otherKind) + "'"
	}
	return multi{
		wrap: func(_ Flavor, cond string) string {
			return "x.id IN (SELECT r." + self + "_id FROM relationships AS r WHERE " + fixed + " AND " + cond + ")"
		},
		sub: func(_ Flavor, name string, _ store.FieldType) col {
			if name == "type" {
				return col{sql: "r." + other + "_kind"}
			}
			return col{sql: "r." + other + "_id"}
		},
	}
}

var commonCols = map[string]func(Flavor) col{
	"id":                seekColumn("id", false),
	"externalId":        column("external_id"),
	"meta.created":      column("created"),
	"meta.lastModified": column("modified"),
}

func withCommon(m map[string]func(Flavor) col) map[string]func(Flavor) col {
	for k, v := range commonCols {
		m[k] = v
	}
	return m
}

var userKind = newKind("users", store.UserFields, withCommon(map[string]func(Flavor) col{
	"userName":             seekColumn("user_name_lower", true),
	"displayName":          column("display_name"),
	"name.formatted":       docText("name", "formatted"),
	"name.familyName":      docText("name", "familyName"),
	"name.givenName":       docText("name", "givenName"),
	"name.middleName":      docText("name", "middleName"),
	"name.honorificPrefix": docText("name", "honorificPrefix"),
	"name.honorificSuffix": docText("name", "honorificSuffix"),
	"locale":               docText("locale"),
	"timezone":             docText("timezone"),
	"status":               column("status"),
	"emailVerified":        docBool("emailVerified"),
}), map[string]multi{
	"emails":       withIndex(docArray("emails"), "e.user_id FROM user_emails AS e WHERE e.value"),
	"phoneNumbers": docArray("phoneNumbers"),
	"groups":       edges(store.RelMember, "from", "user", "to", store.KindGroup),
}, false)

var thingKind = newKind("things", store.ThingFields, withCommon(map[string]func(Flavor) col{
	"displayName":     column("display_name"),
	"thingType":       column("thing_type"),
	"manufacturer":    column("manufacturer"),
	"model":           column("model"),
	"serialNumber":    seekColumn("serial_number", false), // things_serial_number (serial_number, id)
	"firmwareVersion": column("firmware_version"),
	"location":        column("location"),
	"status":          column("status"),
}), map[string]multi{
	// MACs are stored normalized (lower-case), so the comparison is on the
	// primary key itself: an indexed lookup.
	"macAddresses": {
		wrap: func(_ Flavor, cond string) string {
			return "x.id IN (SELECT m.thing_id FROM thing_macs AS m WHERE " + cond + ")"
		},
		sub: func(Flavor, string, store.FieldType) col { return col{sql: "m.mac", lowered: true} },
	},
	"owners": edges(store.RelOwner, "to", "thing", "from", store.KindUser),
	"groups": edges(store.RelMember, "from", "thing", "to", store.KindGroup),
}, true)

var groupKind = newKind("groups", store.GroupFields, withCommon(map[string]func(Flavor) col{
	"displayName": seekColumn("display_name_lower", true),
}), map[string]multi{
	"members": edges(store.RelMember, "to", "group", "from", ""),
}, false)

// compiler accumulates the bind parameters of one statement.
type compiler struct {
	f    Flavor
	k    *kindSQL
	args []any
}

func (c *compiler) arg(v any) string {
	c.args = append(c.args, v)
	return c.f.placeholder(len(c.args))
}

func invalid(field, format string, a ...any) error { return store.InvalidQuery(field, format, a...) }

// element is the scope inside an Any: the sub-fields of one multi-valued field.
type element struct {
	name  string
	field store.Field
	m     multi
}

// where compiles a filter; nil matches everything.
func (c *compiler) where(e store.Expr) (string, error) {
	if e == nil {
		return "1 = 1", nil
	}
	return c.expr(e, nil)
}

func (c *compiler) expr(e store.Expr, el *element) (string, error) {
	switch e := e.(type) {
	case *store.Compare:
		return c.expr(*e, el)
	case *store.Present:
		return c.expr(*e, el)
	case *store.Substrings:
		return c.expr(*e, el)
	case *store.And:
		return c.expr(*e, el)
	case *store.Or:
		return c.expr(*e, el)
	case *store.Not:
		return c.expr(*e, el)
	case *store.Any:
		return c.expr(*e, el)
	case store.And:
		return c.binary(e.Left, "AND", e.Right, el)
	case store.Or:
		return c.binary(e.Left, "OR", e.Right, el)
	case store.Not:
		if e.X == nil {
			return "", fmt.Errorf("not without operand: %w", store.ErrInvalidQuery)
		}
		x, err := c.expr(e.X, el)
		if err != nil {
			return "", err
		}
		return "NOT (" + x + ")", nil
	case store.Any:
		if el != nil {
			return "", invalid(e.Field, "nested multi-valued filter inside %q", el.name)
		}
		if e.Where == nil {
			return "", invalid(e.Field, "no condition")
		}
		sub, err := c.element(e.Field)
		if err != nil {
			return "", err
		}
		pre := c.indexed(sub, e.Where)
		cond, err := c.expr(e.Where, sub)
		if err != nil {
			return "", err
		}
		return pre + sub.m.wrap(c.f, cond), nil
	case store.Compare:
		return c.leaf(e.Field, el, func(name string, cl col, t store.FieldType) (string, error) {
			return c.compare(name, cl, folded(t, e.IgnoreCase), e.Op, e.Value)
		}, func(key string) (string, error) {
			return c.compareAttr(e.Field, key, e.Op, e.Value, e.IgnoreCase)
		}, func(f string) store.Expr {
			return store.Compare{Field: f, Op: e.Op, Value: e.Value, IgnoreCase: e.IgnoreCase}
		})
	case store.Present:
		return c.leaf(e.Field, el, func(_ string, cl col, t store.FieldType) (string, error) {
			return present(cl, t), nil
		}, func(key string) (string, error) {
			if err := checkText(e.Field, key); err != nil {
				return "", err
			}
			return c.f.attrPresent(c.arg(key)), nil
		}, func(f string) store.Expr { return store.Present{Field: f} })
	case store.Substrings:
		pattern, err := likePattern(e)
		if err != nil {
			return "", err
		}
		return c.leaf(e.Field, el, func(name string, cl col, t store.FieldType) (string, error) {
			lhs := cl.sql
			switch folded(t, e.IgnoreCase) {
			case store.CIString:
				pattern = strings.ToLower(pattern)
				if !cl.lowered {
					lhs = c.f.lower(lhs)
				}
			case store.String:
			default:
				return "", invalid(name, "substrings apply to text only")
			}
			cond := lhs + " LIKE " + c.arg(pattern) + ` ESCAPE '\'`
			if cl.nullable {
				cond = "COALESCE(" + cond + ", FALSE)"
			}
			return cond, nil
		}, func(key string) (string, error) {
			if err := checkText(e.Field, key); err != nil {
				return "", err
			}
			if e.IgnoreCase {
				pattern = strings.ToLower(pattern)
			}
			return c.f.attr(c.arg(key), jsonString, func(val string) string {
				return c.foldAttr(val, e.IgnoreCase) + " LIKE " + c.arg(pattern) + ` ESCAPE '\'`
			}), nil
		}, func(f string) store.Expr {
			return store.Substrings{Field: f, Initial: e.Initial, Any: e.Any, Final: e.Final, IgnoreCase: e.IgnoreCase}
		})
	case nil:
		return "", fmt.Errorf("empty filter operand: %w", store.ErrInvalidQuery)
	}
	return "", fmt.Errorf("unsupported filter node %T: %w", e, store.ErrInvalidQuery)
}

func (c *compiler) binary(l store.Expr, op string, r store.Expr, el *element) (string, error) {
	if l == nil || r == nil {
		return "", fmt.Errorf("%s without both operands: %w", strings.ToLower(op), store.ErrInvalidQuery)
	}
	ls, err := c.expr(l, el)
	if err != nil {
		return "", err
	}
	rs, err := c.expr(r, el)
	if err != nil {
		return "", err
	}
	return "(" + ls + " " + op + " " + rs + ")", nil
}

// indexed is the SQL that narrows an Any by an index before its elements
// are checked, followed by AND, or "": where is an equality on the value
// of a field with an index (a user's emails, user_emails). The check that
// follows decides, so the result is what it would be without the index;
// the index only spares reading every row's document.
func (c *compiler) indexed(el *element, where store.Expr) string {
	if el.m.index == "" {
		return ""
	}
	if p, ok := where.(*store.Compare); ok {
		where = *p
	}
	cmp, ok := where.(store.Compare)
	v, isString := cmp.Value.(string)
	if !ok || !isString || cmp.Op != store.OpEq || !strings.EqualFold(cmp.Field, "value") || checkText(el.name, v) != nil {
		return ""
	}
	return "x.id IN (SELECT " + el.m.index + " = " + c.arg(strings.ToLower(v)) + ") AND "
}

// element resolves a multi-valued field for Any.
func (c *compiler) element(field string) (*element, error) {
	name, ok := c.k.byLower[strings.ToLower(field)]
	if !ok {
		return nil, invalid(field, "unknown field")
	}
	fd := c.k.catalog[name]
	if !fd.Multi {
		return nil, invalid(field, "not multi-valued")
	}
	return &element{name: name, field: fd, m: c.k.multis[name]}, nil
}

// leaf resolves the field of a Compare or Present and compiles it with onCol
// (a scalar or element sub-field) or onAttr (a free attribute). A multi-valued
// field, or "multi.sub" outside an Any, becomes an Any over the same node
// rebuilt on the sub-field ("value" for the field itself).
func (c *compiler) leaf(field string, el *element, onCol func(string, col, store.FieldType) (string, error), onAttr func(key string) (string, error), rebuild func(field string) store.Expr) (string, error) {
	lower := strings.ToLower(field)
	if el != nil {
		for sub, t := range el.field.Sub {
			if strings.ToLower(sub) == lower {
				return onCol(el.name+"."+sub, el.m.sub(c.f, sub, t), t)
			}
		}
		return "", invalid(field, "unknown sub-field of %q", el.name)
	}
	if name, ok := c.k.byLower[lower]; ok {
		fd := c.k.catalog[name]
		if fd.Multi {
			return c.expr(store.Any{Field: name, Where: rebuild("value")}, nil)
		}
		return onCol(name, c.k.cols[name](c.f), fd.Type)
	}
	if c.k.attributes && strings.HasPrefix(lower, strings.ToLower(store.AttributePrefix)) {
		key := field[len(store.AttributePrefix):]
		if key == "" {
			return "", invalid(field, "attribute name missing")
		}
		return onAttr(key)
	}
	// "emails.value": a sub-field addressed from the top level (RFC 7644 §3.4.2.2).
	if parent, sub, ok := strings.Cut(field, "."); ok {
		if name, ok := c.k.byLower[strings.ToLower(parent)]; ok && c.k.catalog[name].Multi {
			return c.expr(store.Any{Field: name, Where: rebuild(sub)}, nil)
		}
	}
	return "", invalid(field, "unknown field")
}

// present is SCIM "pr": a non-empty value.
func present(cl col, t store.FieldType) string {
	switch {
	case !cl.nullable && (t == store.String || t == store.CIString):
		return cl.sql + " <> ''"
	case !cl.nullable:
		return "1 = 1"
	case t == store.String || t == store.CIString:
		return "COALESCE(" + cl.sql + ", '') <> ''"
	}
	return cl.sql + " IS NOT NULL"
}

// compare compiles one comparison on a typed field; the result is never NULL.
func (c *compiler) compare(name string, cl col, t store.FieldType, op store.Op, v any) (string, error) {
	if !validOp(op) {
		return "", invalid(name, "unknown operator %q", op)
	}
	if v == nil { // JSON null: "eq null" is "not present" (RFC 7644 §3.4.2.2)
		switch op {
		case store.OpEq:
			return "NOT (" + present(cl, t) + ")", nil
		case store.OpNe:
			return present(cl, t), nil
		}
		return "", invalid(name, "operator %q needs a value, not null", op)
	}
	nullSafe := func(cond string) string {
		if cl.nullable {
			return "COALESCE(" + cond + ", FALSE)"
		}
		return cond
	}
	negate := op == store.OpNe
	if negate {
		op = store.OpEq
	}
	var cond string
	switch t {
	case store.String, store.CIString:
		s, ok := v.(string)
		if !ok {
			return "", invalid(name, "want a string, got %T", v)
		}
		if err := checkText(name, s); err != nil {
			return "", err
		}
		lhs := cl.sql
		if t == store.CIString {
			s = strings.ToLower(s)
			if !cl.lowered {
				lhs = c.f.lower(lhs)
			}
		}
		cond = c.stringOp(lhs, op, s)
	case store.Bool:
		b, ok := v.(bool)
		if !ok {
			return "", invalid(name, "want a bool, got %T", v)
		}
		if op != store.OpEq {
			return "", invalid(name, "operator %q does not apply to a boolean", op)
		}
		cond = "COALESCE(" + cl.sql + ", FALSE) = " + c.arg(b)
	case store.Time:
		tm, ok := v.(time.Time)
		if !ok {
			return "", invalid(name, "want a time, got %T", v)
		}
		if op == store.OpCo || op == store.OpSw || op == store.OpEw {
			return "", invalid(name, "operator %q does not apply to a time", op)
		}
		cond = cl.sql + " " + sqlOps[op] + " " + c.arg(c.f.timeArg(tm))
	default:
		return "", invalid(name, "field type %d is not comparable", t)
	}
	cond = nullSafe(cond)
	if negate {
		return "NOT (" + cond + ")", nil
	}
	return cond, nil
}

var sqlOps = map[store.Op]string{
	store.OpEq: "=", store.OpGt: ">", store.OpGe: ">=", store.OpLt: "<", store.OpLe: "<=",
}

func validOp(op store.Op) bool {
	switch op {
	case store.OpEq, store.OpNe, store.OpCo, store.OpSw, store.OpEw, store.OpGt, store.OpGe, store.OpLt, store.OpLe:
		return true
	}
	return false
}

// stringOp compiles eq/co/sw/ew/gt/ge/lt/le (not ne) on text lhs.
func (c *compiler) stringOp(lhs string, op store.Op, s string) string {
	switch op {
	case store.OpCo:
		return lhs + " LIKE " + c.arg("%"+escapeLike(s)+"%") + ` ESCAPE '\'`
	case store.OpSw:
		return lhs + " LIKE " + c.arg(escapeLike(s)+"%") + ` ESCAPE '\'`
	case store.OpEw:
		return lhs + " LIKE " + c.arg("%"+escapeLike(s)) + ` ESCAPE '\'`
	case store.OpEq:
		return lhs + " = " + c.arg(s)
	}
	return c.f.binaryOrder(lhs) + " " + sqlOps[op] + " " + c.arg(s)
}

// likePattern is the one LIKE pattern of a substrings filter: the parts
// escaped, joined by %, so that they must appear in order without overlap.
func likePattern(e store.Substrings) (string, error) {
	parts := append(append([]string{e.Initial}, e.Any...), e.Final)
	for i, p := range parts {
		if err := checkText(e.Field, p); err != nil {
			return "", err
		}
		parts[i] = escapeLike(p)
	}
	if e.Initial == "" && len(e.Any) == 0 && e.Final == "" {
		return "", invalid(e.Field, "substrings without a part")
	}
	return strings.Join(parts, "%"), nil
}

// checkText refuses text no stored value can hold and the databases disagree
// on: SQLite's LIKE stops at a NUL (so co "\x00" would match everything) and
// PostgreSQL rejects NUL and invalid UTF-8 in a parameter outright.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid(field, "value is not valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid(field, "value contains a NUL character")
	}
	return nil
}

// likeEscaper makes a string match literally inside a LIKE pattern with
// ESCAPE '\': without it "co %" would match everything.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func escapeLike(s string) string { return likeEscaper.Replace(s) }

// compareAttr compiles a comparison on a free attribute of a thing: the Go
// type of the value decides whether it compares as a string, number or bool,
// and only attributes of that JSON type can match. A string compares
// ignoring case when ignoreCase.
func (c *compiler) compareAttr(field, key string, op store.Op, v any, ignoreCase bool) (string, error) {
	if !validOp(op) {
		return "", invalid(field, "unknown operator %q", op)
	}
	if err := checkText(field, key); err != nil {
		return "", err
	}
	keyPH := c.arg(key)
	negate := op == store.OpNe
	if negate {
		op = store.OpEq
	}
	var cond string
	switch v := v.(type) {
	case nil:
		if op != store.OpEq {
			return "", invalid(field, "operator %q needs a value, not null", op)
		}
		cond = "NOT (" + c.f.attrPresent(keyPH) + ")"
	case string:
		if err := checkText(field, v); err != nil {
			return "", err
		}
		if ignoreCase {
			v = strings.ToLower(v)
		}
		cond = c.f.attr(keyPH, jsonString, func(val string) string { return c.stringOp(c.foldAttr(val, ignoreCase), op, v) })
	case bool:
		if op != store.OpEq {
			return "", invalid(field, "operator %q does not apply to a boolean", op)
		}
		cond = c.f.attr(keyPH, jsonBool, func(val string) string { return val + " = " + c.arg(v) })
	default:
		n, ok := number(v)
		if !ok {
			return "", invalid(field, "want a string, number, bool or null, got %T", v)
		}
		if op == store.OpCo || op == store.OpSw || op == store.OpEw {
			return "", invalid(field, "operator %q does not apply to a number", op)
		}
		cond = c.f.attr(keyPH, jsonNumber, func(val string) string { return val + " " + sqlOps[op] + " " + c.arg(n) })
	}
	if negate {
		return "NOT (" + cond + ")", nil
	}
	return cond, nil
}

// folded is the type a field of type t compares as: a String compared
// ignoring case is a CIString.
func folded(t store.FieldType, ignoreCase bool) store.FieldType {
	if ignoreCase && t == store.String {
		return store.CIString
	}
	return t
}

// foldAttr is the text of a free attribute val, lower-cased when ignoreCase.
func (c *compiler) foldAttr(val string, ignoreCase bool) string {
	if ignoreCase {
		return c.f.lower(val)
	}
	return val
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// seeks says whether the page of q reads no more rows than its limit
// through an index, whatever the data: an equality on a seek column (with
// nothing else to check), in id order from the first match. Such a page
// needs no interruption.
func (k *kindSQL) seeks(f Flavor, q store.Query) bool {
	if q.Limit <= 0 || q.Offset > 0 || !strings.EqualFold(q.SortBy, "id") {
		return false
	}
	e := q.Filter
	if p, ok := e.(*store.Compare); ok {
		e = *p
	}
	cmp, ok := e.(store.Compare)
	if _, isString := cmp.Value.(string); !ok || !isString || cmp.Op != store.OpEq {
		return false
	}
	name, ok := k.byLower[strings.ToLower(cmp.Field)]
	if !ok || k.catalog[name].Multi {
		return false
	}
	cl := k.cols[name](f)
	// Compared ignoring case, a column not lower-cased is compared as
	// lower(column), which no index holds.
	return cl.seek && (cl.lowered || folded(k.catalog[name].Type, cmp.IgnoreCase) != store.CIString)
}

// orderBy compiles the sort of q; ties (and the default order) by creation
// then id so that paging is stable.
func (c *compiler) orderBy(q store.Query) (string, error) {
	dir := " ASC"
	if q.Descending {
		dir = " DESC"
	}
	if q.SortBy == "" {
		return "x.created" + dir + ", x.id" + dir, nil
	}
	lower := strings.ToLower(q.SortBy)
	if name, ok := c.k.byLower[lower]; ok {
		fd := c.k.catalog[name]
		if fd.Multi {
			return "", invalid(q.SortBy, "cannot sort by a multi-valued field")
		}
		cl := c.k.cols[name](c.f)
		key := cl.sql
		switch fd.Type {
		case store.CIString, store.String:
			if fd.Type == store.CIString && !cl.lowered {
				key = c.f.lower(key)
			}
			if cl.nullable {
				key = "COALESCE(" + key + ", '')"
			}
			key = c.f.binaryOrder(key)
		case store.Bool:
			key = "COALESCE(" + key + ", FALSE)"
		}
		if name == "id" {
			// Unique: no tie to break, and a repeated term made SQLite sort
			// what an index on (<column>, id) gives in order.
			return key + dir, nil
		}
		return key + dir + ", x.id", nil
	}
	if c.k.attributes && strings.HasPrefix(lower, strings.ToLower(store.AttributePrefix)) && len(q.SortBy) > len(store.AttributePrefix) {
		name := q.SortBy[len(store.AttributePrefix):]
		if err := checkText(q.SortBy, name); err != nil {
			return "", err
		}
		key := c.f.attrSort(c.arg(name))
		// Absent attributes last in both directions: SQLite and PostgreSQL
		// disagree on where NULL sorts, so make it explicit.
		return "(" + key + " IS NULL), " + key + dir + ", x.id", nil
	}
	return "", invalid(q.SortBy, "unknown sort field")
}
