package store

// Expr is a filter over identities in a backend-neutral form. SCIM (and later LDAP)
// filters are translated into it and backends compile it to SQL; nothing is ever
// filtered in memory.
type Expr interface{ isExpr() }

// Op is a comparison operator (the SCIM set, RFC 7644 §3.4.2.2).
type Op string

const (
	OpEq Op = "eq"
	OpNe Op = "ne"
	OpCo Op = "co" // contains
	OpSw Op = "sw" // starts with
	OpEw Op = "ew" // ends with
	OpGt Op = "gt"
	OpGe Op = "ge"
	OpLt Op = "lt"
	OpLe Op = "le"
)

// Compare tests Field against Value. Value is a string, bool, float64, time.Time or
// nil (JSON null). String comparisons on case-insensitive fields ignore case.
type Compare struct {
	Field string
	Op    Op
	Value any
	// IgnoreCase makes a string comparison ignore case on a field that
	// otherwise compares exactly (String) and on a free attribute
	// ("attributes.<name>", which has no type of its own). It costs the
	// field's index, if it has one.
	IgnoreCase bool
}

// Present is true when Field has a non-empty value (SCIM "pr").
type Present struct{ Field string }

// Substrings is true when Field's text starts with Initial, then holds each
// of Any in that order, then ends with Final, none of them overlapping (the
// substrings filter of LDAP, RFC 4511 §4.5.1.7.2); an empty part is no
// condition. It is one pattern, so "a*b*c" is not three unrelated tests.
type Substrings struct {
	Field   string
	Initial string
	Any     []string
	Final   string
	// IgnoreCase: as Compare's.
	IgnoreCase bool
}

// And is true when both sides are.
type And struct{ Left, Right Expr }

// Or is true when either side is.
type Or struct{ Left, Right Expr }

// Not negates X.
type Not struct{ X Expr }

// Any is true when at least one element of the multi-valued Field satisfies Where;
// field names inside Where are relative to the element ("value", "type", "primary").
// SCIM's emails[type eq "work" and value co "@example.com"].
type Any struct {
	Field string
	Where Expr
}

func (Compare) isExpr()    {}
func (Present) isExpr()    {}
func (Substrings) isExpr() {}
func (And) isExpr()        {}
func (Or) isExpr()         {}
func (Not) isExpr()        {}
func (Any) isExpr()        {}
