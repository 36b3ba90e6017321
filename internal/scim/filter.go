package scim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// This file parses the filter language of RFC 7644 §3.4.2.2 into an AST. Translating
// the AST into store.Expr for one resource type is query.go's job; PATCH value
// filters are evaluated by patch.go.

// maxFilterDepth bounds nesting of parentheses, "not" and value paths so a hostile
// filter cannot exhaust the stack of the parser or of the SQL compiler behind it.
const maxFilterDepth = 32

// filter is a node of a parsed filter.
type filter interface {
	String() string
	isFilter()
}

// attrPath is attrPath of RFC 7644 §3.4.2.2: [URI ":"] ATTRNAME ["." subAttr].
// Names are kept as written; they compare case-insensitively (RFC 7643 §2.1).
type attrPath struct {
	URI  string
	Name string
	Sub  string
}

func (p attrPath) String() string {
	s := p.Name
	if p.URI != "" {
		s = p.URI + ":" + s
	}
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

// compareExpr is attrPath compareOp compValue. Value is a string, bool, nil (null)
// or json.Number, exactly as written.
type compareExpr struct {
	Path  attrPath
	Op    string
	Value any
}

// presentExpr is attrPath "pr".
type presentExpr struct{ Path attrPath }

// logicalExpr is "and" or "or" of two filters.
type logicalExpr struct {
	Op          string
	Left, Right filter
}

// notExpr is "not" "(" filter ")".
type notExpr struct{ X filter }

// valuePathExpr is attrPath "[" valFilter "]": Filter's attributes are relative to
// the elements of the multi-valued attribute Path.
type valuePathExpr struct {
	Path   attrPath
	Filter filter
}

func (compareExpr) isFilter()   {}
func (presentExpr) isFilter()   {}
func (logicalExpr) isFilter()   {}
func (notExpr) isFilter()       {}
func (valuePathExpr) isFilter() {}

func (c compareExpr) String() string {
	return c.Path.String() + " " + c.Op + " " + literal(c.Value)
}

func literal(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		if v {
			return "true"
		}
		return "false"
	case json.Number:
		return v.String()
	default:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v) // a string: cannot fail
		return strings.TrimSuffix(b.String(), "\n")
	}
}

func (p presentExpr) String() string { return p.Path.String() + " pr" }

func (l logicalExpr) String() string {
	return l.operand(l.Left, false) + " " + l.Op + " " + l.operand(l.Right, true)
}

// operand parenthesizes a nested logical expression only where precedence ("and"
// binds tighter than "or") and left associativity would otherwise regroup it, so
// that String parses back to the same tree without adding nesting depth.
func (l logicalExpr) operand(f filter, right bool) string {
	if c, ok := f.(logicalExpr); ok && ((c.Op == "or" && l.Op == "and") || (right && c.Op == l.Op)) {
		return "(" + f.String() + ")"
	}
	return f.String()
}

func (n notExpr) String() string       { return "not (" + n.X.String() + ")" }
func (v valuePathExpr) String() string { return v.Path.String() + "[" + v.Filter.String() + "]" }

// compareOps are the RFC 7644 §3.4.2.2 Table 3 operators.
var compareOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true,
	"gt": true, "ge": true, "lt": true, "le": true}

// parseFilter parses a complete filter.
func parseFilter(s string) (filter, error) {
	p, err := newParser(s)
	if err != nil {
		return nil, err
	}
	f, err := p.or(false)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errAt(t, "unexpected %q", t.text)
	}
	return f, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokLParen
	tokRParen
	tokLBrack
	tokRBrack
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

func newParser(s string) (*parser, error) {
	if len(s) > maxFilterLen {
		return nil, badFilter("filter is longer than %d bytes", maxFilterLen)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	return &parser{src: s, toks: toks}, nil
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r':
			i++
		case '(', ')', '[', ']':
			kind := map[byte]tokKind{'(': tokLParen, ')': tokRParen, '[': tokLBrack, ']': tokRBrack}[c]
			toks = append(toks, token{kind, string(c), i})
			i++
		case '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, badFilter("unterminated string starting at offset %d", i)
			}
			toks = append(toks, token{tokString, s[i : j+1], i})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()[]\"", rune(s[j])) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j], i})
			i = j
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(s)}), nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	if t.kind == tokEOF {
		return badFilter("%s at end of %q", fmt.Sprintf(format, args...), p.src)
	}
	return badFilter("%s at offset %d of %q", fmt.Sprintf(format, args...), t.pos, p.src)
}

func (p *parser) keyword(word string) bool {
	t := p.peek()
	return t.kind == tokWord && strings.EqualFold(t.text, word)
}

func (p *parser) expect(kind tokKind, what string) error {
	if t := p.next(); t.kind != kind {
		return p.errAt(t, "expected %s", what)
	}
	return nil
}

// or parses the lowest-precedence level; RFC 7644 §3.4.2.2: "and" binds tighter
// than "or", "not" tighter than both. inValue is true inside a value path's brackets,
// where value paths may not nest.
func (p *parser) or(inValue bool) (filter, error) { return p.chain("or", p.and, inValue) }

func (p *parser) and(inValue bool) (filter, error) { return p.chain("and", p.unary, inValue) }

// chain parses operands of the next tighter level joined by the keyword op,
// left-associative.
func (p *parser) chain(op string, operand func(bool) (filter, error), inValue bool) (filter, error) {
	l, err := operand(inValue)
	if err != nil {
		return nil, err
	}
	for p.keyword(op) {
		p.next()
		r, err := operand(inValue)
		if err != nil {
			return nil, err
		}
		l = logicalExpr{Op: op, Left: l, Right: r}
	}
	return l, nil
}

func (p *parser) unary(inValue bool) (filter, error) {
	if p.depth++; p.depth > maxFilterDepth {
		return nil, p.errAt(p.peek(), "filter nested deeper than %d levels", maxFilterDepth)
	}
	defer func() { p.depth-- }()
	// "not" is a keyword only before "("; otherwise it may be an attribute name.
	if p.keyword("not") && p.toks[p.i+1].kind == tokLParen {
		p.next()
		p.next()
		x, err := p.or(inValue)
		if err != nil {
			return nil, err
		}
		if err := p.expect(tokRParen, `")"`); err != nil {
			return nil, err
		}
		return notExpr{X: x}, nil
	}
	if p.peek().kind == tokLParen {
		p.next()
		x, err := p.or(inValue)
		if err != nil {
			return nil, err
		}
		if err := p.expect(tokRParen, `")"`); err != nil {
			return nil, err
		}
		return x, nil
	}
	return p.attrExp(inValue)
}

func (p *parser) attrExp(inValue bool) (filter, error) {
	t := p.next()
	if t.kind != tokWord {
		return nil, p.errAt(t, "expected an attribute name")
	}
	path, err := parseAttrPath(t.text)
	if err != nil {
		return nil, p.errAt(t, "%v", err)
	}
	if p.peek().kind == tokLBrack {
		if inValue {
			return nil, p.errAt(p.peek(), "value paths cannot nest")
		}
		if path.Sub != "" {
			return nil, p.errAt(p.peek(), "a value path applies to an attribute, not to sub-attribute %q", path.Sub)
		}
		p.next()
		inner, err := p.or(true)
		if err != nil {
			return nil, err
		}
		if err := p.expect(tokRBrack, `"]"`); err != nil {
			return nil, err
		}
		return valuePathExpr{Path: path, Filter: inner}, nil
	}
	opTok := p.next()
	op := strings.ToLower(opTok.text)
	if opTok.kind != tokWord || (op != "pr" && !compareOps[op]) {
		return nil, p.errAt(opTok, "expected an operator (eq ne co sw ew gt ge lt le pr) after %q", t.text)
	}
	if op == "pr" {
		return presentExpr{Path: path}, nil
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return compareExpr{Path: path, Op: op, Value: v}, nil
}

// value parses compValue: false / null / true / number / string (RFC 7644 §3.4.2.2).
func (p *parser) value() (any, error) {
	t := p.next()
	switch t.kind {
	case tokString:
		var s string
		if err := json.Unmarshal([]byte(t.text), &s); err != nil {
			return nil, p.errAt(t, "invalid string literal %s", t.text)
		}
		return s, nil
	case tokWord:
		switch strings.ToLower(t.text) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		}
		if isNumber(t.text) {
			return json.Number(t.text), nil
		}
	}
	return nil, p.errAt(t, "expected a value (a JSON string, number, true, false or null)")
}

// isNumber reports whether s is a JSON number (RFC 8259 §6).
func isNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// parseAttrPath parses [URI ":"] ATTRNAME ["." subAttr]. The URI is everything up
// to the last colon, since schema URNs contain colons and dots ("...:core:2.0:User").
func parseAttrPath(s string) (attrPath, error) {
	var p attrPath
	rest := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		p.URI, rest = s[:i], s[i+1:]
		if !strings.HasPrefix(strings.ToLower(p.URI), "urn:") {
			return p, fmt.Errorf("%q: a schema prefix must be a URN", s)
		}
	}
	name, sub, hasSub := strings.Cut(rest, ".")
	if !validName(name, false) {
		return p, fmt.Errorf("%q is not an attribute name", s)
	}
	if hasSub && !validName(sub, true) {
		return p, fmt.Errorf("%q: %q is not a sub-attribute name", s, sub)
	}
	p.Name, p.Sub = name, sub
	return p, nil
}

// validName checks ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA
// (RFC 7644 §3.4.2.2); sub-attributes may also be "$ref" (RFC 7643 §2.4).
func validName(s string, sub bool) bool {
	if sub && s == "$ref" {
		return true
	}
	for i, c := range []byte(s) {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_')) {
			return false
		}
	}
	return s != ""
}
