//go:build linux

package mqtt

import (
	"syscall"
	"testing"
	"time"
)

// Bytes that arrive after ReadNow said ErrWouldWait and before
// WaitReadable begins are not lost: the poller announced them to nobody
// (it is edge-triggered, and the wait resets what it announced before),
// so the wait must find them itself, and returns at once instead of at the
// read deadline.
func TestTLSConnWaitFindsBytesThatCameBefore(t *testing.T) {
	p := newTLSPair(t)
	var b [16]byte
	if n, err := p.server.ReadNow(b[:]); err != ErrWouldWait {
		t.Fatalf("ReadNow with nothing sent: %d, %v", n, err)
	}
	p.client.Write([]byte("came before"))
	if !inSocket(p.server.Socket()) {
		t.Fatal("the client's bytes never reached the server's socket")
	}
	p.server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := p.server.WaitReadable(); err != nil {
		t.Fatalf("the wait missed bytes already in the socket: %v", err)
	}
	if got := string(p.readAll(t, len("came before"))); got != "came before" {
		t.Fatalf("read %q", got)
	}
}

// inSocket waits up to 10 s until raw, a server's socket, has bytes to
// read, without taking them, and says whether it has.
func inSocket(raw syscall.RawConn) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var n int
		raw.Control(func(fd uintptr) {
			var b [1]byte
			n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		if n > 0 {
			return true
		}
	}
	return false
}
