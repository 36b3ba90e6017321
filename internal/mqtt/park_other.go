//go:build !linux

package mqtt

import "net"

// Without epoll, an idle connection waits for its socket on a goroutine
// of its own (waitAndRun), which starts at the smallest stack.
type (
	parker    struct{}
	parkState struct{}
)

func newParker() (*parker, error) { return nil, nil }

func (*parker) close() {}

// park hands c, whose reader found nothing to read, to a goroutine that
// waits for its socket.
func (c *conn) park() { go c.waitAndRun() }

// waitAndRun waits until an idle connection's socket is readable (or its
// read deadline passes, or it is closed), then serves it.
func (c *conn) waitAndRun() {
	c.srv.Stats.Parked.Add(1)
	err := c.nc.(interface{ WaitReadable() error }).WaitReadable()
	c.srv.Stats.Parked.Add(-1)
	c.woke(err)
}

// closedParked: closing the connection ends waitAndRun's wait.
func (*conn) closedParked() {}

// Plain is nc: a plain connection's idle reader waits in its Read.
func Plain(nc net.Conn) net.Conn { return nc }
