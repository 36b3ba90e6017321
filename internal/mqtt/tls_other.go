//go:build !unix

package mqtt

// readable: without a peek, records.wait does not wait and the reader
// waits in crypto/tls.
func readable(uintptr) bool { return true }
