package ui

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template/parse"
	"unicode"

	"golang.org/x/net/html"
)

// pageTemplates are the built-in templates of every package that renders
// pages or e-mails (each keeps them in its templates directory), and the
// layout.
func pageTemplates(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../*/templates/*.html")
	if err != nil {
		t.Fatal(err)
	}
	mails, err := filepath.Glob("../*/templates/mail/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, mails...)
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[filepath.Dir(f)] = true
	}
	// Each package that builds a Kit has its pages here; a new one counts.
	for _, pkg := range []string{"authn", "console", "household", "landing", "oauth", "selfservice", "ui", "uma"} {
		if !dirs["../"+pkg+"/templates"] {
			t.Errorf("no templates of package %s found", pkg)
		}
	}
	return files
}

// TestTemplatesHaveNoUntranslatedText fails for text a reader sees that a
// template writes in English instead of through {{t "…"}}: the text between
// tags, the attributes a browser shows or reads aloud (title, placeholder,
// aria-label, alt, an input button's value), and string literals a template prints
// ({{or .Name "A household"}}). Whitespace, punctuation, numbers and code
// (<code>, <style>) are not text.
func TestTemplatesHaveNoUntranslatedText(t *testing.T) {
	var found []string
	for _, f := range pageTemplates(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		strs, err := untranslated(f, string(b), filepath.Ext(f) == ".html")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strs {
			found = append(found, f+": "+s)
		}
	}
	if len(found) > 0 {
		t.Errorf("%d texts in templates do not go through {{t}}:\n%s", len(found), strings.Join(found, "\n"))
	}
}

// The checker itself: what it must find and what it must leave alone.
func TestUntranslatedFinds(t *testing.T) {
	src := `{{define "content"}}<h1>{{t "Hello"}}</h1>
<p class="x{{if .A}} on{{end}}">Plain words</p>
<input placeholder="Type here" value="{{.V}}"><input type="submit" value="Send">
<button title="{{t "Fine"}}" aria-label="Read aloud">{{if .B}}yes{{else}}{{t "no"}}{{end}}</button>
<img alt="A logo" src="{{asset "x"}}"> · 42 – {{.N}} (5%)
<code>thingid serve</code><option value="{{.}}">{{.}}</option>
{{or .Name "A household"}}{{.T.Format "2006-01-02 15:04 MST"}}{{printf "%.0f" .X}}{{$f := .Form "invite"}}{{t "Hi %s" (or .U "you")}}
<td>{{if .Y}}(you){{end}}</td>{{end}}`
	got, err := untranslated("x.html", src, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`"Plain words"`, `placeholder="Type here"`, `value="Send"`, `aria-label="Read aloud"`, `"yes"`, `alt="A logo"`, `{{"A household"}}`, `{{"you"}}`, `"(you)"`}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("found\n%q\nwant\n%q", got, want)
	}
	got, _ = untranslated("m.txt", `{{define "body"}}{{t "Hello %s," .Name}}

Open this: {{.Link}}
{{end}}`, false)
	if !slices.Equal(got, []string{`"Open this:"`}) {
		t.Errorf("e-mail: %q", got)
	}
}

// hole stands for a template action in the flattened text.
const hole = "\uE000"

// untranslated lists the English a template writes itself. The template's
// text is flattened, actions replaced by a placeholder and both branches of
// an if kept in turn, so that HTML split by actions reads as a whole.
func untranslated(name, src string, isHTML bool) ([]string, error) {
	trees, err := parse.Parse(name, src, "", "", map[string]any{})
	if err != nil {
		// Unknown functions: parse again without checking them.
		tr := parse.New(name)
		tr.Mode = parse.SkipFuncCheck
		trees = map[string]*parse.Tree{}
		if _, err := tr.Parse(src, "", "", trees); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range trees {
			if !yield(k) {
				return
			}
		}
	}) {
		var flat strings.Builder
		var literals []string
		flatten(trees[n].Root, &flat, &literals)
		out = append(out, literals...)
		if isHTML {
			out = append(out, htmlText(flat.String())...)
		} else {
			for _, line := range strings.Split(flat.String(), "\n") {
				if isWords(line) {
					out = append(out, fmt.Sprintf("%q", strings.TrimSpace(strings.ReplaceAll(line, hole, ""))))
				}
			}
		}
	}
	return out, nil
}

func flatten(n parse.Node, flat *strings.Builder, literals *[]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			flatten(c, flat, literals)
		}
	case *parse.TextNode:
		flat.Write(n.Text)
	case *parse.ActionNode:
		flat.WriteString(hole)
		if len(n.Pipe.Decl) == 0 {
			printedLiterals(n.Pipe, literals)
		}
	case *parse.IfNode:
		flatten(n.List, flat, literals)
		flat.WriteString(hole)
		flatten(n.ElseList, flat, literals)
	case *parse.RangeNode:
		flatten(n.List, flat, literals)
		flat.WriteString(hole)
		flatten(n.ElseList, flat, literals)
	case *parse.WithNode:
		flatten(n.List, flat, literals)
		flat.WriteString(hole)
		flatten(n.ElseList, flat, literals)
	case *parse.TemplateNode:
		flat.WriteString(hole)
	}
}

// printedLiterals are the string literals a printing pipeline may write:
// arguments of a function other than t (whose argument is the source text
// and whose own arguments are printed), asset and printf's format; not the
// arguments of methods (.Format "2006-01-02", $f.Get "name": keys and layouts).
func printedLiterals(p *parse.PipeNode, literals *[]string) {
	for _, c := range p.Cmds {
		args := c.Args
		if id, ok := args[0].(*parse.IdentifierNode); ok {
			switch id.Ident {
			case "t", "printf":
				args = args[2:]
			case "asset":
				continue
			default:
				args = args[1:]
			}
		} else if len(args) > 1 {
			continue // a method call
		}
		for _, a := range args {
			switch a := a.(type) {
			case *parse.StringNode:
				if isWords(a.Text) {
					*literals = append(*literals, fmt.Sprintf("{{%q}}", a.Text))
				}
			case *parse.PipeNode:
				printedLiterals(a, literals)
			}
		}
	}
}

// shown are the attributes whose value a reader sees or hears.
var shown = []string{"title", "placeholder", "aria-label", "alt", "aria-placeholder", "aria-roledescription", "label"}

// htmlText is the text and shown attributes of flattened HTML.
func htmlText(flat string) []string {
	var out []string
	z := html.NewTokenizer(strings.NewReader(flat))
	code := 0 // depth in <code>, <style>, <script>
	for {
		switch z.Next() {
		case html.ErrorToken:
			return out
		case html.TextToken:
			if s := string(z.Text()); code == 0 && isWords(s) {
				out = append(out, fmt.Sprintf("%q", strings.Join(strings.Fields(strings.ReplaceAll(s, hole, " ")), " ")))
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			tok := z.Token()
			if tok.Data == "code" || tok.Data == "style" || tok.Data == "script" {
				if tok.Type == html.StartTagToken {
					code++
				} else if tok.Type == html.EndTagToken {
					code--
				}
			}
			if tok.Type == html.EndTagToken {
				continue
			}
			// A <button>'s value is sent, not shown; an input button shows its value.
			button := tok.Data == "input" && slices.ContainsFunc(tok.Attr, func(a html.Attribute) bool {
				return a.Key == "type" && (a.Val == "submit" || a.Val == "button" || a.Val == "reset")
			})
			for _, a := range tok.Attr {
				if (slices.Contains(shown, a.Key) || (button && a.Key == "value")) && isWords(a.Val) {
					out = append(out, fmt.Sprintf("%s=%q", a.Key, a.Val))
				}
			}
		}
	}
}

// isWords reports whether s has a letter outside actions and format verbs.
func isWords(s string) bool {
	return strings.IndexFunc(verb.ReplaceAllString(strings.NewReplacer(hole, " ", "%%", "").Replace(s), ""), unicode.IsLetter) >= 0
}

// TestCataloguesCoverTheGoText: every English text the Go code of the page
// packages hands to a page has a German translation. The text is found as
// xgettext finds it, by where it stands: the source argument of a call
// (ui.Msg, a Translator, tr, refuse, message, change, explain, and the
// validators' refusals: invalid, invalidField, advise, bad, refused), a field of a page's
// literal (Title, Text, LinkText, Label, title, label), and the tables of
// words (notices, fieldLabels, dayWords, sentences).
func TestCataloguesCoverTheGoText(t *testing.T) {
	calls := map[string][]int{"Msg": {0}, "tr": {0}, "refuse": {2}, "message": {3, 4}, "change": {0}, "explain": {0},
		// The validators' refusals a page shows (ui.Refusal).
		"invalid": {1}, "invalidField": {1}, "advise": {1}, "bad": {1}, "refused": {1}, "fieldErr": {1}}
	fields := []string{"Title", "Text", "LinkText", "Label", "title", "label"}
	tables := []string{"notices", "fieldLabels", "dayWords", "sentences"}
	files, err := filepath.Glob("../*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	store, err := filepath.Glob("../store/sqlstore/*.go") // the filters' refusals
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, store...)
	de := defaultSite.catalogs["de"]
	var missing []string
	found := 0
	check := func(f string, fset *token.FileSet, e ast.Expr) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		src, err := strconv.Unquote(lit.Value)
		if err != nil || !isWords(src) {
			return
		}
		found++
		if _, ok := de[src]; !ok {
			missing = append(missing, fmt.Sprintf("%s: %q", fset.Position(lit.Pos()), src))
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || !slices.Contains([]string{"household", "uma", "console", "policy", "identity", "oauth", "password", "audit", "sqlstore"}, filepath.Base(filepath.Dir(f))) {
			continue
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name := ""
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.CallExpr: // s.kit.Translator(r)("…")
					if sel, ok := fn.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Translator" {
						name = "tr"
					}
				}
				for _, i := range calls[name] {
					if i < len(n.Args) {
						check(f, fset, n.Args[i])
					}
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && slices.Contains(fields, id.Name) {
					check(f, fset, n.Value)
				}
			case *ast.ValueSpec:
				if len(n.Names) == 1 && slices.Contains(tables, n.Names[0].Name) && len(n.Values) == 1 {
					ast.Inspect(n.Values[0], func(m ast.Node) bool {
						if kv, ok := m.(*ast.KeyValueExpr); ok {
							if _, isKey := kv.Key.(*ast.BasicLit); isKey {
								check(f, fset, kv.Value)
								return false
							}
						}
						if e, ok := m.(ast.Expr); ok {
							check(f, fset, e)
						}
						return true
					})
					return false
				}
			}
			return true
		})
	}
	if found < 100 {
		t.Errorf("only %d texts found in the Go code of the pages: is the test still looking in the right places?", found)
	}
	if len(missing) > 0 {
		t.Errorf("messages/de.json lacks %d texts of the Go code:\n%s", len(missing), strings.Join(missing, "\n"))
	}
}
