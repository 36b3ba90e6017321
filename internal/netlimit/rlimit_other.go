//go:build !unix

package netlimit

// openFilesLimit is a conservative guess where the system has no RLIMIT_NOFILE.
func openFilesLimit() int { return 8192 }
