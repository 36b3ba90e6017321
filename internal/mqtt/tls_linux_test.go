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
	waitInSocket(t, p.server)
	p.server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := p.server.WaitReadable(); err != nil {
		t.Fatalf("the wait missed bytes already in the socket: %v", err)
	}
	if got := string(p.readAll(t, len("came before"))); got != "came before" {
		t.Fatalf("read %q", got)
	}
}

// waitInSocket waits until the server's socket has bytes to read, without
// taking them.
func waitInSocket(t *testing.T, c *TLSConn) {
	t.Helper()
	raw, err := c.rec.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		var n int
		raw.Control(func(fd uintptr) {
			var b [1]byte
			n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the client's bytes never reached the server's socket")
		}
	}
}
