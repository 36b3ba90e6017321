//go:build unix

package netlimit

import "syscall"

// openFilesLimit is the process's soft RLIMIT_NOFILE (which the Go runtime
// raises to the hard limit at start on Linux).
func openFilesLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 1024
	}
	return int(min(r.Cur, 1<<20))
}
