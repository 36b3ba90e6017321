// Package browsertest starts Debian's Chromium for tests that drive thingid's
// pages as a person would. It is imported only by _test files.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// New starts headless Chromium with a fresh profile and returns a context for
// chromedp actions, limited to a minute. Without Chromium the test is skipped,
// except in CI (CI=true), where that is a failure. The browser accepts the
// self-signed certificates of httptest TLS servers.
func New(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required in CI but %s is missing: install Debian's chromium package", ChromiumPath)
		}
		t.Skipf("browser test skipped: %s not found (apt-get install chromium to run it)", ChromiumPath)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// Without these Chromium keeps dialling Google's hosts, which this
		// machine's closed network refuses.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first call starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	// A bound on the whole walk, so that a stuck page fails the test; a
	// long walk (the console's) on a loaded machine takes over a minute.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
