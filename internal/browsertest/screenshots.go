package browsertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// Screenshots keeps what the user saw: in $THINGID_TEST_SCREENSHOTS when
// set (to look at them afterwards), else in the test's temporary directory.
type Screenshots struct {
	dir string
	n   int
}

// NewScreenshots returns the screenshots of t.
func NewScreenshots(t *testing.T) *Screenshots {
	dir := os.Getenv("THINGID_TEST_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Screenshots{dir: dir}
}

// Take saves the whole page as NN-name.png and logs its path.
func (s *Screenshots) Take(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	s.n++
	path := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
