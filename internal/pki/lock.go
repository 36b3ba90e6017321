package pki

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const lockFile = ".lock"

// lockDir creates dir (0700) and holds an exclusive lock on a file in it until
// unlock. Two processes starting in one data directory at once (two `serve`s,
// `serve` and `factory issue`) would otherwise each create a CA, and the
// certificates issued by the one whose files were overwritten would never
// verify. flock(2) locks belong to the open file, so goroutines of one process
// exclude each other too, and a crashed process leaves no stale lock.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
