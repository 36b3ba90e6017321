package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Bounds of an administrator's raw policy set: a set within them cannot
// make the parser, the validator or a decision slow or deep.
const (
	MaxPlatformBytes    = 64 << 10
	MaxPlatformPolicies = 256
	// MaxNesting bounds brackets ((, [, {) inside one another in the text:
	// the parser descends once per bracket.
	MaxNesting = 32
	// MaxDepth bounds the depth of a policy's expression tree (a && b && c
	// is as deep as it is long).
	MaxDepth = 64
)

// Platform is an administrator's Cedar policy set for every household,
// parsed and validated. Each policy may carry @id("…") (else it is numbered
// from 1) and @reason("…"), the words a guardian reads when it decides.
type Platform struct {
	set   *cedar.PolicySet
	texts map[cedar.PolicyID]text
	// clocked: a policy reads the local time, in ways the engine does not
	// analyse, so decisions may change at any minute.
	clocked bool
}

// Len is the number of policies.
func (p *Platform) Len() int { return len(p.texts) }

// PolicyError is one reason a raw policy set was refused, at its line and
// column in the text (0 when the reason concerns the whole text).
type PolicyError struct {
	Line, Column int
	Reason       string
}

func (e PolicyError) String() string {
	if e.Line == 0 {
		return e.Reason
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Reason)
}

// PolicyErrors are every reason a raw policy set was refused.
type PolicyErrors []PolicyError

func (es PolicyErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.String()
	}
	return "policy set refused: " + strings.Join(s, "; ")
}

// ParsePlatform parses src as Cedar policies and validates each against the
// schema (cedar-go's x/exp/schema/validate, strict mode). Any problem is a
// PolicyErrors naming lines and reasons.
func ParsePlatform(src []byte) (*Platform, error) {
	if len(src) > MaxPlatformBytes {
		return nil, PolicyErrors{{Reason: fmt.Sprintf("the policy set is %d bytes, more than %d", len(src), MaxPlatformBytes)}}
	}
	if err := checkNesting(src); err != nil {
		return nil, PolicyErrors{*err}
	}
	list, err := cedar.NewPolicyListFromBytes("platform.cedar", src)
	if err != nil {
		return nil, PolicyErrors{parseError(err)}
	}
	if len(list) > MaxPlatformPolicies {
		return nil, PolicyErrors{{Reason: fmt.Sprintf("the policy set has %d policies, more than %d", len(list), MaxPlatformPolicies)}}
	}
	p := &Platform{set: cedar.NewPolicySet(), texts: map[cedar.PolicyID]text{}}
	var errs PolicyErrors
	for i, pol := range list {
		pos := pol.Position()
		at := func(format string, args ...any) {
			errs = append(errs, PolicyError{Line: pos.Line, Column: pos.Column, Reason: fmt.Sprintf(format, args...)})
		}
		name := strconv.Itoa(i + 1)
		if v, ok := pol.Annotations()["id"]; ok {
			name = string(v)
		}
		id := cedar.PolicyID("platform:" + name)
		if _, dup := p.texts[id]; dup {
			at("@id(%q) is the id of an earlier policy", clip(name))
			continue
		}
		a := (*xast.Policy)(pol.AST())
		if d := depth(a); d > MaxDepth {
			at("the policy's expressions are %d deep, more than %d", d, MaxDepth)
			continue
		}
		if err := validator.Policy(name, a); err != nil {
			// The validator checks a policy once per action it may apply to;
			// every action has the same context, so one fault is reported once.
			seen := map[string]bool{}
			for _, e := range flatten(err) {
				msg := perAction.ReplaceAllString(e.Error(), "in context")
				if !seen[msg] {
					seen[msg] = true
					at("%s", msg)
				}
			}
			continue
		}
		line := pos.Line
		text := func(tr Translate) string { return tr("platform policy %s (line %d)", name, line) }
		if v, ok := pol.Annotations()["reason"]; ok {
			text = func(Translate) string { return string(v) } // the administrator's words
		}
		p.set.Add(id, pol)
		p.texts[id] = text
		p.clocked = p.clocked || readsLocal(a)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// SetPlatform parses and validates src and, only when all of it is good,
// makes it the platform set; otherwise the working set stays.
func (e *Engine) SetPlatform(src []byte) (*Platform, error) {
	p, err := ParsePlatform(src)
	if err != nil {
		return nil, err
	}
	e.UsePlatform(p)
	return p, nil
}

// UsePlatform makes p, from ParsePlatform, the platform set.
func (e *Engine) UsePlatform(p *Platform) { e.platform.Store(p) }

// Platform is the platform set in force.
func (e *Engine) Platform() *Platform { return e.platform.Load() }

// perAction is the action a validator message names for a context fault.
var perAction = regexp.MustCompile(`in context for Action::"[^"]*"`)

// posRE finds "<input>:LINE:COLUMN" in cedar-go's parse errors, which carry
// the position only in their text.
var posRE = regexp.MustCompile(`<input>:(\d+):(\d+)\s*(.*)$`)

func parseError(err error) PolicyError {
	msg := err.Error()
	if m := posRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		return PolicyError{Line: line, Column: col, Reason: m[3]}
	}
	return PolicyError{Reason: strings.TrimPrefix(msg, "parser error: ")}
}

// checkNesting refuses text whose brackets nest deeper than MaxNesting, or
// that chains more than MaxDepth unary operators (! and -), before cedar-go
// parses and compiles it recursively. It skips strings (with their escapes)
// and // comments, as Cedar's scanner does.
func checkNesting(src []byte) *PolicyError {
	line, col, depth, unary := 1, 0, 0, 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		col++
		switch c {
		case '!', '-':
			if unary++; unary > MaxDepth {
				return &PolicyError{Line: line, Column: col, Reason: fmt.Sprintf("more than %d ! or - in a row", MaxDepth)}
			}
		case ' ', '\t', '\r', '\n':
		default:
			unary = 0
		}
		switch {
		case c == '\n':
			line, col = line+1, 0
		case c == '"':
			for i++; i < len(src) && src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				} else if src[i] == '\n' {
					line, col = line+1, 0
				}
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			i-- // let the loop see the newline
		case c == '(' || c == '[' || c == '{':
			if depth++; depth > MaxNesting {
				return &PolicyError{Line: line, Column: col, Reason: fmt.Sprintf("brackets nested more than %d deep", MaxNesting)}
			}
		case c == ')' || c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// depth is the depth of p's deepest expression.
func depth(p *xast.Policy) int {
	d := 0
	for _, c := range p.Conditions {
		d = max(d, nodeDepth(c.Body))
	}
	return d
}

// nodeDepth walks n breadth-first, one level at a time, so that a
// pathological tree costs no recursion here.
func nodeDepth(n xast.IsNode) int {
	level := []xast.IsNode{n}
	d := 0
	for len(level) > 0 && d <= MaxDepth {
		d++
		var next []xast.IsNode
		for _, node := range level {
			root := true
			xast.Inspect(xast.NewNode(node), func(child xast.IsNode) bool {
				if root { // descend from node itself, one step only
					root = false
					return true
				}
				next = append(next, child)
				return false
			})
		}
		level = next
	}
	return d
}

// readsLocal reports whether p's conditions read the context other than its
// scope (which does not change with the time).
func readsLocal(p *xast.Policy) bool {
	found := false
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			switch n := n.(type) {
			case xast.NodeTypeAccess:
				if v, ok := n.Arg.(xast.NodeTypeVariable); ok && v.Name == "context" && n.Value == "scope" {
					return false
				}
			case xast.NodeTypeVariable:
				found = found || n.Name == "context"
			}
			return !found
		})
	}
	return found
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
