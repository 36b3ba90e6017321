package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// AxeVersion is the axe-core release the accessibility checks run, pinned
// so that a new release's rules do not change a test's verdict unasked.
const AxeVersion = "4.14.1"

// Axe returns the source of axe-core (Deque's accessibility engine), which
// it installs with npm into the user's cache directory the first time.
// Without npm the test is skipped, except in CI (CI=true), where that is a
// failure; scripts/test.sh installs Debian's npm.
func Axe(t testing.TB) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("npm is required in CI for the accessibility check: install Debian's npm package")
		}
		t.Skip("accessibility check skipped: npm not found (apt-get install npm to run it)")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "thingid-test", "axe-core-"+AxeVersion)
	file := filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
	if src, err := os.ReadFile(file); err == nil {
		return string(src)
	}
	// Installed beside and renamed into place, so that tests running at once
	// never read a half-installed copy.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "axe-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(npm, "install", "--prefix", tmp, "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "axe-core@"+AxeVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing axe-core %s with npm: %v\n%s", AxeVersion, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(file); statErr != nil {
			t.Fatalf("keeping axe-core in %s: %v", dir, err)
		}
	}
	src, err := os.ReadFile(file)
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
