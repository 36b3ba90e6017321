//go:build unix

package mqtt

import "syscall"

// readable is the check of syscall.RawConn.Read in records.wait: true
// once the socket has a byte, its end or an error to read, which a peek
// finds without taking it; false parks the reader on the poller until the
// socket becomes readable. The peek also finds what arrived before the
// wait began, which the poller, edge-triggered, would not announce again.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN
}
