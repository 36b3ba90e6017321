package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/npmtest"
)

// AxeVersion is the axe-core release the accessibility checks run, pinned
// so that a new release's rules do not change a test's verdict unasked.
const AxeVersion = "4.14.1"

// Axe returns the source of axe-core (Deque's accessibility engine),
// installed with npm the first time (npmtest.Install: skipped without npm,
// except in CI).
func Axe(t testing.TB) string {
	t.Helper()
	modules := npmtest.Install(t, "axe-core", AxeVersion, "the accessibility check")
	src, err := os.ReadFile(filepath.Join(modules, "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatalf("reading axe-core: %v", err)
	}
	return string(src)
}

// Violation is one rule axe-core found broken on a page.
type Violation struct {
	ID, Impact, Help string
	Nodes            []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// CheckAccessibility runs axe (the source Axe returned) on the page tab
// shows, against WCAG 2.1 A and AA, and fails t for every serious or
// critical violation, naming the rule and the elements.
func CheckAccessibility(t testing.TB, tab context.Context, axe, page string) {
	t.Helper()
	// Evaluated through the DevTools protocol, which the page's
	// Content-Security-Policy does not govern: the page itself runs no script.
	if _, err := chromedp.Run(tab, chromedp.Evaluate[any](axe+";0", chromedp.EvalAsValue)); err != nil {
		t.Fatalf("%s: injecting axe-core: %v", page, err)
	}
	raw, err := chromedp.Run(tab, chromedp.Evaluate[string](
		`axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => JSON.stringify(r.violations))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: running axe-core: %v", page, err)
	}
	var vs []Violation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		t.Fatalf("%s: axe-core's answer: %v", page, err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target...))
		}
		msg := fmt.Sprintf("%s: %s (%s): %s at %s", page, v.ID, v.Impact, v.Help, strings.Join(where, ", "))
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
}
