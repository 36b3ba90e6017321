// Package npmtest gives tests the JavaScript packages they check thingid
// with (axe-core for accessibility, MQTT.js as a client), installed with
// Debian's npm into the user's cache directory once per pinned version.
// Without npm or node a test is skipped, except in CI (CI=true), where that
// is a failure; scripts/test.sh installs both.
package npmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// need finds tool (from Debian package pkg) or skips or fails t.
func need(t testing.TB, tool, pkg, why string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI for %s: install Debian's %s package", tool, why, pkg)
		}
		t.Skipf("%s skipped: %s not found (apt-get install %s to run it)", why, tool, pkg)
	}
	return p
}

// Node returns the path of node, for a test that runs a script (why names
// the test's purpose in the skip or failure message).
func Node(t testing.TB, why string) string {
	t.Helper()
	return need(t, "node", "nodejs", why)
}

// Install returns the node_modules directory holding pkg@version and what it
// depends on, installing it the first time. Installs run beside the cache
// and are renamed into place, so tests running at once never read a
// half-installed copy.
func Install(t testing.TB, pkg, version, why string) string {
	t.Helper()
	npm := need(t, "npm", "npm", why)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "thingid-test", pkg+"-"+version)
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err == nil {
		return modules
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), pkg+"-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(npm, "install", "--prefix", tmp, "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", pkg+"@"+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing %s %s with npm: %v\n%s", pkg, version, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(filepath.Join(modules, pkg, "package.json")); statErr != nil {
			t.Fatalf("keeping %s in %s: %v", pkg, dir, err)
		}
	}
	return modules
}
