package sqlstore

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// This file enforces the rule on migrations (docs/architecture.md, Storage):
// within a release they only expand the schema, so that nodes of the previous
// version keep working on it while versions are mixed during a rolling
// upgrade. Removing or renaming waits for a later release.

// lastUnchecked is the newest migration written before the rule was; the
// ones above it are checked.
const lastUnchecked = 30

// contractHistory are the older migrations that broke the rule, as the
// check finds them: 0014 dropped the index audit_target for others, and
// 0015 dropped household_invitations.invitee_id (SQLite: rebuilt the table,
// dropping and renaming). 0025 and 0030 replaced an index by one of the same
// name, which the rule allows. The test fails if this list stops describing
// what the check finds, so the check is proven on real files too.
var contractHistory = []string{
	"sqlite/0014_audit_reading.sql",
	"sqlite/0015_invitation_address.sql",
	"postgres/0014_audit_reading.sql",
	"postgres/0015_invitation_address.sql",
}

func TestMigrationsExpandOnly(t *testing.T) {
	var flagged []string
	for _, f := range []Flavor{SQLite, Postgres} {
		files, err := fs.Glob(f.migrations(), "*.sql")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			num, _, _ := strings.Cut(name, "_")
			version, err := strconv.Atoi(num)
			if err != nil {
				t.Fatalf("%s/%s: not named NNNN_name.sql", f, name)
			}
			body, err := fs.ReadFile(f.migrations(), name)
			if err != nil {
				t.Fatal(err)
			}
			path := f.String() + "/" + name
			problems, err := checkExpandOnly(path, string(body), f)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if version <= lastUnchecked {
				if len(problems) > 0 {
					flagged = append(flagged, path)
				}
				continue
			}
			for _, p := range problems {
				t.Error(p)
			}
		}
	}
	if !slices.Equal(flagged, contractHistory) {
		t.Errorf("migrations up to %04d that the check refuses: %q, want the history %q", lastUnchecked, flagged, contractHistory)
	}
}

// TestExpandOnlyCheck proves the check refuses each form that would break a
// node of the previous version, and lets the expanding forms pass, also
// when a forbidden word hides in a comment, a literal or a quoted name.
func TestExpandOnlyCheck(t *testing.T) {
	tests := []struct {
		sql  string
		want string // a part of the refusal; "" when allowed
	}{
		{"DROP TABLE t", "DROP TABLE"},
		{"drop table if exists t;", "DROP TABLE"},
		{"DROP VIEW v", "DROP VIEW"},
		{"DROP INDEX i", "without re-creating"},
		{"DROP INDEX IF EXISTS s.i; CREATE INDEX j ON t (a)", "without re-creating"},
		{"ALTER TABLE t DROP COLUMN c", "DROP COLUMN"},
		{"ALTER TABLE t DROP c", "DROP COLUMN"},
		{"ALTER TABLE t ADD COLUMN a TEXT, DROP COLUMN b", "DROP COLUMN"},
		{"ALTER TABLE t DROP CONSTRAINT t_check", "DROP CONSTRAINT"},
		{"ALTER TABLE t RENAME TO u", "RENAME"},
		{"ALTER TABLE t RENAME COLUMN a TO b", "RENAME"},
		{"alter table t rename a to b", "RENAME"},
		{"ALTER INDEX i RENAME TO j", "RENAME"},
		{"ALTER TABLE t ALTER COLUMN c TYPE BIGINT", "type"},
		{"ALTER TABLE t ALTER c TYPE BIGINT USING c::bigint", "type"},
		{"ALTER TABLE t ALTER COLUMN c SET DATA TYPE TEXT", "type"},
		{"ALTER TABLE t ALTER COLUMN c SET NOT NULL", "SET NOT NULL"},
		{"ALTER TABLE t ALTER COLUMN c DROP NOT NULL", "DROP NOT NULL"},
		{"ALTER TABLE t ALTER COLUMN c DROP DEFAULT", "DROP DEFAULT"},
		{"ALTER TABLE t ADD COLUMN c TEXT NOT NULL", "NOT NULL without a DEFAULT"},
		{"ALTER TABLE t ADD c INTEGER NOT NULL REFERENCES u (id)", "NOT NULL without a DEFAULT"},
		{"ALTER TABLE t ADD COLUMN a TEXT CHECK (a <> ''), ADD COLUMN b BIGINT NOT NULL", "NOT NULL without a DEFAULT"},
		{"DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", "DO block"},
		{"CREATE TABLE t (a TEXT NOT NULL); ALTER TABLE u DROP COLUMN b", "DROP COLUMN"},

		{"CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)", ""},
		{"ALTER TABLE t ADD COLUMN c TEXT NOT NULL DEFAULT ''", ""},
		{"ALTER TABLE t ADD COLUMN c TEXT", ""},
		{"ALTER TABLE t ADD COLUMN a TEXT CHECK (a <> 'x, DROP COLUMN b'), ADD COLUMN b JSONB", ""},
		{"ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL)", ""},
		{"ALTER TABLE t ALTER COLUMN c SET DEFAULT 0", ""},
		{"DROP INDEX i; CREATE INDEX i ON t (a, b)", ""},
		{`DROP INDEX "I"; CREATE UNIQUE INDEX IF NOT EXISTS "I" ON t (a)`, ""},
		{"CREATE INDEX i ON t (a) -- DROP TABLE t\n", ""},
		{"/* DROP TABLE t; /* nested */ RENAME */ CREATE INDEX i ON t (a)", ""},
		{"INSERT INTO t (a) VALUES ('DROP TABLE t; ALTER TABLE u RENAME TO v')", ""},
		{"INSERT INTO t (a) VALUES (E'it\\'s; DROP TABLE t')", ""},
		{`CREATE TABLE "drop table" ("rename" TEXT)`, ""},
		{"CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN DROP TABLE t; END $body$", ""},
		{"UPDATE t SET a = 1 WHERE b = 'x''; DROP TABLE t; --'", ""},
	}
	for _, tt := range tests {
		problems, err := checkExpandOnly("postgres/0031_test.sql", tt.sql, Postgres)
		if err != nil {
			t.Errorf("%q: %v", tt.sql, err)
			continue
		}
		switch {
		case tt.want == "" && len(problems) > 0:
			t.Errorf("%q: refused: %q", tt.sql, problems)
		case tt.want != "" && len(problems) != 1:
			t.Errorf("%q: got %d refusals %q, want one saying %q", tt.sql, len(problems), problems, tt.want)
		case tt.want != "" && !strings.Contains(problems[0], tt.want):
			t.Errorf("%q: got %q, want it to say %q", tt.sql, problems[0], tt.want)
		}
		if tt.want != "" && len(problems) == 1 && !strings.HasPrefix(problems[0], "postgres/0031_test.sql:1: ") {
			t.Errorf("%q: %q does not name the file and line", tt.sql, problems[0])
		}
	}
}

// The dialects differ in what is a quote: SQLite's block comments do not
// nest, its names may be quoted with brackets and backquotes, and a
// trigger's body holds statements of its own.
func TestSplitStatementsSQLite(t *testing.T) {
	tests := []struct {
		sql  string
		want int // statements
	}{
		{"/* /* */ DROP TABLE t; CREATE INDEX i ON t (a)", 2},
		{"CREATE TABLE [drop;table] (`rename;` TEXT); SELECT 1", 2},
		{`CREATE TRIGGER a BEFORE DELETE ON t BEGIN SELECT CASE WHEN 1 THEN RAISE(ABORT, 'x;') END; SELECT 2; END; SELECT 3`, 2},
		{"SELECT $$x; DROP TABLE t; $$", 3},
	}
	for _, tt := range tests {
		got, err := splitStatements(tt.sql, SQLite)
		if err != nil || len(got) != tt.want {
			t.Errorf("%q: got %d statements (%v), want %d", tt.sql, len(got), err, tt.want)
		}
	}
	for _, bad := range []string{"SELECT 'x", "SELECT 1 /* ", `SELECT "x`, "SELECT [x", "SELECT `x"} {
		if _, err := splitStatements(bad, SQLite); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: got %v, want an error naming the line", bad, err)
		}
	}
	if _, err := splitStatements("SELECT 1;\n\nSELECT $a$ x $b$", Postgres); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("unterminated dollar quote: got %v, want an error naming line 3", err)
	}
}

// FuzzSplitStatements: any text splits or is refused with an error, never a
// panic; a statement's text splits again into that one statement, the same
// words; and the check runs on whatever splits.
func FuzzSplitStatements(f *testing.F) {
	for _, fl := range []Flavor{SQLite, Postgres} {
		files, _ := fs.Glob(fl.migrations(), "*.sql")
		for _, name := range files {
			body, _ := fs.ReadFile(fl.migrations(), name)
			f.Add(string(body), fl == Postgres)
		}
	}
	f.Add("DROP INDEX i; CREATE INDEX i ON t (a) /* x */ -- y", true)
	f.Add("SELECT E'\\'' , $a$ $ $a$, \"q\"\"q\", [b] `c`", false)
	f.Fuzz(func(t *testing.T, src string, postgres bool) {
		fl := SQLite
		if postgres {
			fl = Postgres
		}
		stmts, err := splitStatements(src, fl)
		if err != nil {
			return
		}
		for _, s := range stmts {
			again, err := splitStatements(s.text, fl)
			if err != nil || len(again) != 1 || !slices.Equal(again[0].tokens, s.tokens) {
				t.Fatalf("statement %q splits again into %+v (%v), want %+v", s.text, again, err, s.tokens)
			}
		}
		if _, err := checkExpandOnly("fuzz.sql", src, fl); err != nil {
			t.Fatalf("split, then the check failed: %v", err)
		}
	})
}

// checkExpandOnly returns a refusal for each statement of migration src that
// a node of the previous version could not live with, each naming the file
// and line, the statement and what to write instead; an error when src does
// not split into statements.
func checkExpandOnly(path, src string, f Flavor) ([]string, error) {
	stmts, err := splitStatements(src, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	created := map[string]bool{} // indexes the file creates
	for _, s := range stmts {
		if name, ok := s.createdIndex(); ok {
			created[name] = true
		}
	}
	var problems []string
	for _, s := range stmts {
		if why := s.contracts(created); why != "" {
			text := strings.Join(strings.Fields(s.text), " ")
			if len(text) > 160 {
				text = text[:160] + "…"
			}
			problems = append(problems, fmt.Sprintf("%s:%d: %s: %s. Migrations only expand the schema within a release (docs/architecture.md, Storage): "+
				"nodes of the previous version run on it until the last one is upgraded", path, s.line, text, why))
		}
	}
	return problems, nil
}

const later = "; stop using it in this release and remove it in a migration of a later one, once no running node uses it"

// contracts says why statement s takes away what a node of the previous
// version may use, or "" when it only adds. created are the indexes its
// file creates.
func (s sqlStatement) contracts(created map[string]bool) string {
	w := s.tokens
	switch {
	case s.isWord(0, "DO"):
		return "a DO block, whose statements this check cannot read: write them as plain statements"
	case s.isWord(0, "DROP") && s.isWord(1, "INDEX"):
		for _, name := range s.droppedIndexes() {
			if !created[name] {
				return fmt.Sprintf("drops index %s without re-creating it in this file: an older node's statements may need it (ON CONFLICT on a unique index, a plan); "+
					"replace an index by one of the same name, or drop it in a later release", name)
			}
		}
		return ""
	case s.isWord(0, "DROP") && len(w) > 1:
		return "DROP " + strings.ToUpper(w[1].text) + " removes what nodes of the previous version use" + later
	case !s.isWord(0, "ALTER"):
		return ""
	}
	for i := range w {
		if s.isWord(i, "RENAME") {
			return "RENAME: nodes of the previous version use the old name; add the new table or column, write both, and remove the old one in a later release"
		}
	}
	if !s.isWord(1, "TABLE") {
		return ""
	}
	for _, a := range s.tableActions() {
		if why := a.contracts(s); why != "" {
			return why
		}
	}
	return ""
}

// action is one comma-separated action of an ALTER TABLE, as token indexes
// [from, to) of its statement.
type action struct{ from, to int }

func (a action) contracts(s sqlStatement) string {
	i := a.from
	switch {
	case s.isWord(i, "DROP") && s.isWord(i+1, "CONSTRAINT"):
		return "DROP CONSTRAINT: nodes of the previous version may rely on it (ON CONFLICT, rows they assume)" + later
	case s.isWord(i, "DROP"):
		return "DROP COLUMN: nodes of the previous version read and write it" + later
	case s.isWord(i, "ALTER"):
		i++
		if s.isWord(i, "COLUMN") {
			i++
		}
		i++ // the column's name
		switch {
		case s.isWord(i, "TYPE"), s.isWord(i, "SET") && s.isWord(i+1, "DATA") && s.isWord(i+2, "TYPE"):
			return "a column's type change: nodes of the previous version read and write the old type; add a column of the new type, write both, and remove the old one in a later release"
		case s.isWord(i, "SET") && s.isWord(i+1, "NOT") && s.isWord(i+2, "NULL"):
			return "SET NOT NULL: nodes of the previous version may write rows without the column; give it a DEFAULT now and make it NOT NULL in a later release"
		case s.isWord(i, "DROP") && s.isWord(i+1, "NOT") && s.isWord(i+2, "NULL"):
			return "DROP NOT NULL: nodes of the previous version read the column as never NULL; make it nullable in a later release"
		case s.isWord(i, "DROP") && s.isWord(i+1, "DEFAULT"):
			return "DROP DEFAULT: nodes of the previous version insert rows without the column" + later
		}
	case s.isWord(i, "ADD"):
		if s.isWord(i+1, "CONSTRAINT") || s.isWord(i+1, "PRIMARY") || s.isWord(i+1, "UNIQUE") || s.isWord(i+1, "CHECK") || s.isWord(i+1, "FOREIGN") || s.isWord(i+1, "EXCLUDE") {
			return "" // see the rule: only where older nodes cannot violate it
		}
		notNull, hasDefault := false, false
		for j := i; j < a.to; j++ {
			notNull = notNull || s.isWord(j, "NOT") && s.isWord(j+1, "NULL")
			hasDefault = hasDefault || s.isWord(j, "DEFAULT")
		}
		if notNull && !hasDefault {
			return "ADD COLUMN ... NOT NULL without a DEFAULT: nodes of the previous version insert rows without the column; give it a DEFAULT (or leave it nullable)"
		}
	}
	return ""
}

// tableActions splits an ALTER TABLE [IF EXISTS] [ONLY] name ... at the
// commas outside parentheses.
func (s sqlStatement) tableActions() []action {
	i := 2
	if s.isWord(i, "IF") && s.isWord(i+1, "EXISTS") {
		i += 2
	}
	if s.isWord(i, "ONLY") {
		i++
	}
	i = s.skipName(i)
	var acts []action
	depth, from := 0, i
	for j := i; j < len(s.tokens); j++ {
		switch s.tokens[j] {
		case sqlToken{punct, "("}:
			depth++
		case sqlToken{punct, ")"}:
			depth--
		case sqlToken{punct, ","}:
			if depth == 0 {
				acts = append(acts, action{from, j})
				from = j + 1
			}
		}
	}
	return append(acts, action{from, len(s.tokens)})
}

// createdIndex is the name of the index a CREATE [UNIQUE] INDEX
// [CONCURRENTLY] [IF NOT EXISTS] name statement creates.
func (s sqlStatement) createdIndex() (string, bool) {
	i := 1
	if s.isWord(i, "UNIQUE") {
		i++
	}
	if !s.isWord(0, "CREATE") || !s.isWord(i, "INDEX") {
		return "", false
	}
	i++
	if s.isWord(i, "CONCURRENTLY") {
		i++
	}
	if s.isWord(i, "IF") && s.isWord(i+1, "NOT") && s.isWord(i+2, "EXISTS") {
		i += 3
	}
	if i >= len(s.tokens) || s.isWord(i, "ON") {
		return "", false // unnamed
	}
	return s.nameAt(i), true
}

// droppedIndexes are the names of DROP INDEX [CONCURRENTLY] [IF EXISTS]
// name [, name ...] [CASCADE | RESTRICT].
func (s sqlStatement) droppedIndexes() []string {
	i := 2
	if s.isWord(i, "CONCURRENTLY") {
		i++
	}
	if s.isWord(i, "IF") && s.isWord(i+1, "EXISTS") {
		i += 2
	}
	var names []string
	for i < len(s.tokens) && !s.isWord(i, "CASCADE") && !s.isWord(i, "RESTRICT") {
		names = append(names, s.nameAt(i))
		i = s.skipName(i)
		if i < len(s.tokens) && s.tokens[i] == (sqlToken{punct, ","}) {
			i++
		} else {
			break
		}
	}
	return names
}

// skipName returns the index after the (schema-qualified) name at i.
func (s sqlStatement) skipName(i int) int {
	for i+2 < len(s.tokens) && s.tokens[i+1] == (sqlToken{punct, "."}) {
		i += 2
	}
	return i + 1
}

// nameAt is the last part of the (schema-qualified) name at i: unquoted
// names fold to lower case, as both databases fold them.
func (s sqlStatement) nameAt(i int) string {
	last := s.skipName(i) - 1
	if last >= len(s.tokens) {
		return ""
	}
	tok := s.tokens[last]
	if tok.kind == word {
		return strings.ToLower(tok.text)
	}
	return tok.text
}

func (s sqlStatement) isWord(i int, upper string) bool {
	return i < len(s.tokens) && s.tokens[i].kind == word && strings.EqualFold(s.tokens[i].text, upper)
}

// sqlStatement is one statement of a migration: its text as written, from
// its first token to its last, the line it starts on, and its tokens.
type sqlStatement struct {
	text   string
	line   int
	tokens []sqlToken
}

type tokenKind int

const (
	word       tokenKind = iota // a keyword, an unquoted name or a number
	quotedName                  // a quoted name, without its quotes
	literal                     // a string: its text does not matter here
	punct                       // one character of anything else
)

type sqlToken struct {
	kind tokenKind
	text string
}

// splitStatements splits src at the semicolons outside comments, literals,
// quoted names and trigger bodies, in the lexical rules of dialect f: only
// PostgreSQL nests block comments and has E” and dollar-quoted strings;
// only SQLite quotes names with brackets and backquotes.
func splitStatements(src string, f Flavor) ([]sqlStatement, error) {
	var (
		stmts []sqlStatement
		cur   sqlStatement
		start = -1 // of cur's first token
		end   int  // of cur's last token
		depth int  // BEGIN/CASE ... END inside a trigger's or function's body
	)
	line := func(pos int) int { return 1 + strings.Count(src[:pos], "\n") }
	errAt := func(pos int, what string) error { return fmt.Errorf("line %d: unterminated %s", line(pos), what) }
	flush := func() {
		if start >= 0 {
			cur.text, cur.line = src[start:end], line(start)
			stmts = append(stmts, cur)
		}
		cur, start, depth = sqlStatement{}, -1, 0
	}
	for i := 0; i < len(src); {
		c := src[i]
		var tok sqlToken
		next := i + 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case strings.HasPrefix(src[i:], "--"):
			nl := strings.IndexByte(src[i:], '\n')
			if nl < 0 {
				i = len(src)
			} else {
				i += nl + 1
			}
			continue
		case strings.HasPrefix(src[i:], "/*"):
			j, ok := blockComment(src, i, f == Postgres)
			if !ok {
				return nil, errAt(i, "block comment")
			}
			i = j
			continue
		case c == ';' && depth == 0:
			flush()
			i++
			continue
		case c == '\'':
			j, ok := quoted(src, i, '\'', false)
			if !ok {
				return nil, errAt(i, "string literal")
			}
			tok, next = sqlToken{literal, ""}, j
		case (c == 'E' || c == 'e') && f == Postgres && strings.HasPrefix(src[i+1:], "'"):
			j, ok := quoted(src, i+1, '\'', true)
			if !ok {
				return nil, errAt(i, "string literal")
			}
			tok, next = sqlToken{literal, ""}, j
		case c == '"' || f == SQLite && c == '`':
			j, ok := quoted(src, i, c, false)
			if !ok {
				return nil, errAt(i, "quoted name")
			}
			tok, next = sqlToken{quotedName, strings.ReplaceAll(src[i+1:j-1], string([]byte{c, c}), string(c))}, j
		case c == '[' && f == SQLite:
			j := strings.IndexByte(src[i:], ']')
			if j < 0 {
				return nil, errAt(i, "quoted name")
			}
			tok, next = sqlToken{quotedName, src[i+1 : i+j]}, i+j+1
		case c == '$' && f == Postgres && dollarTag(src[i:]) != "":
			tag := dollarTag(src[i:])
			j := strings.Index(src[i+len(tag):], tag)
			if j < 0 {
				return nil, errAt(i, "dollar-quoted string")
			}
			tok, next = sqlToken{literal, ""}, i+len(tag)+j+len(tag)
		case isWordByte(c):
			j := i
			for j < len(src) && (isWordByte(src[j]) || f == Postgres && src[j] == '$' && j > i) {
				j++
			}
			tok, next = sqlToken{word, src[i:j]}, j
		default:
			tok = sqlToken{punct, string(c)}
		}
		if start < 0 {
			start = i
		}
		end = next
		cur.tokens = append(cur.tokens, tok)
		if cur.hasBody() {
			switch {
			case cur.isWord(len(cur.tokens)-1, "BEGIN"), cur.isWord(len(cur.tokens)-1, "CASE"):
				depth++
			case cur.isWord(len(cur.tokens)-1, "END") && depth > 0:
				depth--
			}
		}
		i = next
	}
	flush()
	return stmts, nil
}

// hasBody tells a CREATE TRIGGER, FUNCTION or PROCEDURE, whose body (SQLite's
// trigger, PostgreSQL's BEGIN ATOMIC) holds statements of its own.
func (s sqlStatement) hasBody() bool {
	if !s.isWord(0, "CREATE") {
		return false
	}
	for i := 1; i < len(s.tokens) && i < 5; i++ {
		if s.isWord(i, "TRIGGER") || s.isWord(i, "FUNCTION") || s.isWord(i, "PROCEDURE") {
			return true
		}
	}
	return false
}

// quoted returns the end of the quoted text starting at src[i] == q, in
// which a doubled q stands for itself and, with backslash, \ escapes the
// next byte.
func quoted(src string, i int, q byte, backslash bool) (int, bool) {
	for j := i + 1; j < len(src); j++ {
		switch {
		case backslash && src[j] == '\\':
			j++
		case src[j] == q && j+1 < len(src) && src[j+1] == q:
			j++
		case src[j] == q:
			return j + 1, true
		}
	}
	return 0, false
}

// blockComment returns the end of the comment starting at src[i:] == "/*".
func blockComment(src string, i int, nested bool) (int, bool) {
	depth := 0
	for j := i; j+1 < len(src); {
		switch {
		case src[j] == '/' && src[j+1] == '*' && (nested || depth == 0):
			depth++
			j += 2
		case src[j] == '*' && src[j+1] == '/':
			depth--
			j += 2
			if depth == 0 {
				return j, true
			}
		default:
			j++
		}
	}
	return 0, false
}

// dollarTag returns the opening $tag$ of a PostgreSQL dollar-quoted string
// at the start of s, or "" ($1 is a parameter, not a quote).
func dollarTag(s string) string {
	for j := 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '$':
			return s[:j+1]
		case c >= '0' && c <= '9' && j == 1, !isWordByte(c):
			return ""
		}
	}
	return ""
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
