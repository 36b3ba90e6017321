package e2e

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

// A docStep is one thing a reader of a document does, in order: a shell block
// (a ```sh fence) or an action a person does outside the shell (a browser
// step), written as a directive in an HTML comment:
//
//	<!-- doctest: background wait=https://localhost:8443/readyz -->
//	```sh
//	./thingid serve
//	```
//
// A directive right before a ```sh fence (blank lines between are fine) says
// how to run that block; a directive with `browser=` stands alone and is an
// action of its own. Keys:
//
//	background        the block keeps running (a server, a subscriber); it is
//	                  stopped when the document ends or at the next `stop`
//	stop              stop every background block before this one runs
//	wait=URL          after starting the block, wait until URL answers (https://
//	                  or http://, any status; tcp:HOST:PORT for a listener)
//	wait-output=TEXT  after starting the block, wait until its output has TEXT
//	expect=TEXT       the block's output must contain TEXT
//	fails             the block must end with a failing command (a refusal
//	                  the document shows); -e still stops at an earlier failure
//	lines=N           run only the block's first N lines (say why in reason=)
//	skip              the block is not run; reason= must say why
//	reason=TEXT       why a block is skipped or cut
//	browser=pair      an action: a person pairs a device in a browser
//	source=FILE       an action: from here on, each block runs in a shell that
//	                  has read FILE, if it exists (the reader's terminal that
//	                  the document had read it with `. ./FILE`)
//	user=, password=, from=FILE, button=  the browser action's arguments
type docStep struct {
	line   int // 1-based line of the fence or the directive
	script string
	opts   map[string]string
}

func (s docStep) has(k string) bool { _, ok := s.opts[k]; return ok }

// parseDoc returns the steps of a Markdown document in order. It fails on a
// directive it cannot read, an unknown key, a skip without reason, and a
// directive that names no block and no action.
func parseDoc(text string) ([]docStep, error) {
	var (
		steps   []docStep
		pending map[string]string // the directive waiting for its fence
		pendAt  int
		inFence bool
		fenceSh bool
		block   strings.Builder
		start   int
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if inFence {
			if strings.HasPrefix(trimmed, "```") {
				inFence = false
				if fenceSh {
					steps = append(steps, docStep{line: start, script: block.String(), opts: orEmpty(pending)})
					pending = nil
				}
				continue
			}
			if fenceSh {
				block.WriteString(line)
				block.WriteByte('\n')
			}
			continue
		}
		switch {
		case strings.HasPrefix(trimmed, "```"):
			inFence, fenceSh, start = true, strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) == "sh", n
			block.Reset()
			if !fenceSh && pending != nil {
				return nil, fmt.Errorf("line %d: the doctest directive of line %d is followed by a block that is not ```sh", n, pendAt)
			}
		case strings.HasPrefix(trimmed, "<!-- doctest:"):
			if pending != nil {
				return nil, fmt.Errorf("line %d: a doctest directive follows the one of line %d without a block between", n, pendAt)
			}
			opts, err := parseDirective(trimmed)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if _, ok := opts["browser"]; ok || opts["source"] != "" {
				steps = append(steps, docStep{line: n, opts: opts})
				continue
			}
			pending, pendAt = opts, n
		case trimmed == "":
		default:
			if pending != nil {
				return nil, fmt.Errorf("line %d: the doctest directive of line %d must come right before its ```sh block", n, pendAt)
			}
		}
	}
	if inFence {
		return nil, fmt.Errorf("line %d: a code block is never closed", start)
	}
	if pending != nil {
		return nil, fmt.Errorf("line %d: a doctest directive without a block", pendAt)
	}
	return steps, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

var directiveKeys = map[string]bool{
	"background": true, "stop": true, "wait": true, "wait-output": true, "expect": true,
	"fails": true, "lines": true, "skip": true, "reason": true,
	"browser": true, "source": true, "user": true, "password": true, "from": true, "button": true,
}

// parseDirective reads `<!-- doctest: key key=value key="quoted value" -->`.
func parseDirective(s string) (map[string]string, error) {
	body, ok := strings.CutPrefix(s, "<!-- doctest:")
	if !ok {
		return nil, fmt.Errorf("not a doctest directive")
	}
	body, ok = strings.CutSuffix(body, "-->")
	if !ok {
		return nil, fmt.Errorf("a doctest directive must end with --> on its line")
	}
	opts := map[string]string{}
	for rest := strings.TrimSpace(body); rest != ""; rest = strings.TrimSpace(rest) {
		end := strings.IndexAny(rest, " =")
		if end < 0 {
			end = len(rest)
		}
		key, value := rest[:end], ""
		rest = rest[end:]
		if strings.HasPrefix(rest, "=") {
			rest = rest[1:]
			if strings.HasPrefix(rest, `"`) {
				closing := strings.IndexByte(rest[1:], '"')
				if closing < 0 {
					return nil, fmt.Errorf("doctest %s: the quoted value is never closed", key)
				}
				value, rest = rest[1:1+closing], rest[2+closing:]
			} else {
				sp := strings.IndexByte(rest, ' ')
				if sp < 0 {
					sp = len(rest)
				}
				value, rest = rest[:sp], rest[sp:]
			}
			if value == "" {
				return nil, fmt.Errorf("doctest %s: empty value", key)
			}
		}
		if !directiveKeys[key] {
			return nil, fmt.Errorf("doctest: unknown key %q", key)
		}
		if _, dup := opts[key]; dup {
			return nil, fmt.Errorf("doctest %s: given twice", key)
		}
		opts[key] = value
	}
	if _, skip := opts["skip"]; skip && opts["reason"] == "" {
		return nil, fmt.Errorf("doctest skip: say why with reason=")
	}
	if f, ok := opts["source"]; ok && (f == "" || strings.Trim(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" || strings.HasPrefix(f, ".")) {
		return nil, fmt.Errorf("doctest source: %q is not a plain file name", f)
	}
	if _, cut := opts["lines"]; cut && opts["reason"] == "" {
		return nil, fmt.Errorf("doctest lines: say why with reason=")
	}
	return opts, nil
}

func TestParseDoc(t *testing.T) {
	doc := "# T\n\n<!-- doctest: background wait=https://localhost:8443/readyz -->\n\n```sh\n./thingid serve\n```\n\n" +
		"```json\n{}\n```\n\n<!-- doctest: browser=pair user=alice password=\"a b c\" from=p.json -->\n\n" +
		"<!-- doctest: skip reason=\"needs a person\" -->\n```sh\necho hi\n```\n"
	steps, err := parseDoc(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || steps[0].script != "./thingid serve\n" || !steps[0].has("background") ||
		steps[0].opts["wait"] != "https://localhost:8443/readyz" || steps[1].opts["password"] != "a b c" ||
		steps[1].line != 13 || steps[0].line != 5 || steps[2].opts["reason"] != "needs a person" {
		t.Fatalf("steps: %+v", steps)
	}
	for _, bad := range []string{
		"<!-- doctest: skip -->\n```sh\nx\n```\n",                    // skip without reason
		"<!-- doctest: lines=1 -->\n```sh\nx\n```\n",                 // cut without reason
		"<!-- doctest: nosuch -->\n```sh\nx\n```\n",                  // unknown key
		"<!-- doctest: expect=\"open -->\n```sh\nx\n```\n",           // unclosed quote
		"<!-- doctest: background -->\ntext\n```sh\nx\n```\n",        // directive far from its block
		"<!-- doctest: background -->\n```json\n{}\n```\n",           // not a shell block
		"<!-- doctest: background -->\n",                             // no block
		"```sh\nnever closed\n",                                      // open fence
		"<!-- doctest: stop stop -->\n```sh\nx\n```\n",               // key twice
		"<!-- doctest: background\n```sh\nx\n```\n",                  // no -->
		"<!-- doctest: wait= -->\n```sh\nx\n```\n",                   // empty value
		"<!-- doctest: stop -->\n<!-- doctest: stop -->\n```sh\n```", // two directives
	} {
		if _, err := parseDoc(bad); err == nil {
			t.Errorf("parseDoc(%q) accepted it", bad)
		}
	}
}

func FuzzParseDoc(f *testing.F) {
	f.Add("<!-- doctest: background wait=\"https://x\" -->\n```sh\na\n```\n")
	f.Add("<!-- doctest: browser=pair user=a -->\n")
	f.Add("```sh\n```\n")
	f.Fuzz(func(t *testing.T, doc string) {
		steps, err := parseDoc(doc)
		if err != nil {
			return
		}
		for _, s := range steps {
			if s.has("skip") && s.opts["reason"] == "" {
				t.Fatalf("a skip without reason: %+v", s)
			}
			if s.has("lines") && s.opts["reason"] == "" {
				t.Fatalf("a cut without reason: %+v", s)
			}
			if s.has("browser") && s.script != "" {
				t.Fatalf("a browser action with a script: %+v", s)
			}
		}
	})
}
