//go:build linux

package mqtt

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker holds the server's idle connections without a goroutine each
// (issue 16): an idle connection's reader registers its socket here and
// ends, and one goroutine, blocked in epoll_wait on an epoll instance of
// the parker's own, starts a new reader once the socket is readable. The
// Go runtime's poller keeps its own registration of the socket; a second
// epoll instance may watch the same one.
//
// A parked connection ends in one of three ways, whichever comes first
// (parker.take decides, under mu): its socket becomes readable (run
// serves it again), its keep-alive deadline passes (a timer, which holds
// no goroutine until it fires), or the server closes it (closeNow: a
// revocation, a takeover, the shutdown). The last two end it as a wait
// for the socket ending with that error would.
//
// The socket is registered level-triggered with EPOLLONESHOT: bytes that
// arrived between ReadNow's ErrWouldWait and the registration are
// reported at once, and one report disarms it until the connection parks
// again (EPOLL_CTL_MOD). An event carries the park's number, not the file
// descriptor, whose number a new connection may hold by the time the
// event is read; every epoll_ctl on a connection's descriptor is made
// inside syscall.RawConn.Control, so the descriptor cannot be closed, and
// its number reused, meanwhile. A closed descriptor leaves the epoll set
// with its last reference.
type parker struct {
	epfd int
	stop [2]int // a pipe whose read end is in the set: written to stop wait

	mu      sync.Mutex
	conns   map[uint64]*conn // parked, by park number (never 0: 0 is stop)
	last    uint64
	stopped bool // park refuses: closing, or epoll_wait failed

	closeOnce sync.Once
	done      chan struct{} // closed when wait has returned
}

// parkState is a conn's part in its server's parker, set as it parks
// (registered, by its reader) and under parker.mu (id, timer).
type parkState struct {
	id         uint64 // the park number while parked, 0 otherwise
	registered bool   // the socket is in the epoll set: park re-arms it
	timer      *time.Timer
}

// socketReader is a nowReader that says which socket it found empty when
// ReadNow answered ErrWouldWait (TLSConn, PlainConn).
type socketReader interface {
	Socket() syscall.RawConn
}

// newParker makes the epoll instance and starts its goroutine.
func newParker() (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &parker{epfd: epfd, conns: map[uint64]*conn{}, done: make(chan struct{})}
	if err := syscall.Pipe2(p.stop[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // data 0: stop
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.stop[0], &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	go p.wait()
	return p, nil
}

func (p *parker) closeFDs() {
	syscall.Close(p.epfd)
	syscall.Close(p.stop[0])
	syscall.Close(p.stop[1])
}

// close stops wait and releases the epoll instance. The server calls it
// once every connection has ended; a connection parking later (none
// should) is closed.
func (p *parker) close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		syscall.Write(p.stop[1], []byte{1})
		<-p.done
		p.closeFDs()
	})
}

// wait reads the epoll set's events until close, and serves each parked
// connection that became readable on a new goroutine.
func (p *parker) wait() {
	defer close(p.done)
	var events [128]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// Only a broken epoll instance fails here; the parked
			// connections then end as closed ones.
			p.fail(os.NewSyscallError("epoll_wait", err))
			return
		}
		for _, ev := range events[:n] {
			id := eventID(&ev)
			if id == 0 {
				return
			}
			// Readable, its end, an error or a hang-up: the reader finds
			// out which.
			if c := p.take(id); c != nil {
				c.unparked()
				go c.run()
			}
		}
	}
}

// fail ends every parked connection with err and parks no more.
func (p *parker) fail(err error) {
	p.mu.Lock()
	p.stopped = true
	conns := p.conns
	p.conns = map[uint64]*conn{}
	for _, c := range conns {
		c.parked.id = 0
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.unparked()
		go c.woke(err)
	}
}

// eventID and setEventID keep a park number in an event's 64 bits of
// data (epoll_data), which syscall.EpollEvent names Fd and Pad.
func eventID(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

func setEventID(ev *syscall.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

// take ends park id, if it is still parked, and returns its connection.
func (p *parker) take(id uint64) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[id]
	if c != nil {
		delete(p.conns, id)
		c.parked.id = 0
	}
	return c
}

// park holds c, whose reader found nothing to read (ErrWouldWait), until
// its socket is readable, its keep-alive deadline passes or it is closed;
// the calling reader then ends, and touches c no more once it is
// registered: from then on another goroutine may have it.
func (c *conn) park() {
	p := c.srv.parker
	var raw syscall.RawConn
	if sr, ok := c.nc.(socketReader); ok {
		raw = sr.Socket()
	}
	if raw == nil {
		// ReadNow said ErrWouldWait without a socket: not a reader of this
		// package's; end the connection rather than hold it unread.
		c.woke(errors.New("mqtt: an idle connection without a socket"))
		return
	}
	op := syscall.EPOLL_CTL_ADD
	if c.parked.registered {
		op = syscall.EPOLL_CTL_MOD
	}
	c.parked.registered = true // or the connection ends: Control failed
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		c.woke(net.ErrClosed)
		return
	}
	p.last++
	id := p.last
	c.parked.id = id
	p.conns[id] = c
	c.srv.Stats.Parked.Add(1)
	if !c.deadline.IsZero() {
		// Armed under mu, as expire reads the park there: a deadline
		// past already ends the park as soon as it is made.
		if c.parked.timer == nil {
			c.parked.timer = time.AfterFunc(time.Until(c.deadline), func() { p.expire(c) })
		} else {
			c.parked.timer.Reset(time.Until(c.deadline))
		}
	}
	p.mu.Unlock()

	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT}
	setEventID(&ev, id)
	var ctlErr error
	err := raw.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil && ctlErr != nil {
		err = os.NewSyscallError("epoll_ctl", ctlErr)
	}
	if err != nil && p.take(id) != nil {
		// Closed meanwhile (Control fails once closing began; closeNow
		// found the park, or it finds it not), or the set refused the
		// socket: ended as a failed wait, unless another end won.
		c.unparked()
		c.woke(err)
	}
}

// expire ends c's park at its keep-alive deadline, as a wait for the
// socket ends at the read deadline. A timer of an earlier park that fires
// late finds c not parked, or parked before its deadline, and does
// nothing.
func (p *parker) expire(c *conn) {
	p.mu.Lock()
	if c.parked.id == 0 || time.Now().Before(c.deadline) {
		p.mu.Unlock()
		return
	}
	id := c.parked.id
	p.mu.Unlock()
	if p.take(id) == nil {
		return
	}
	c.unparked()
	c.woke(os.ErrDeadlineExceeded)
}

// closedParked ends c's park, if it is parked, after the server closed c (its
// socket leaves the epoll set with it): as a wait ends when its
// connection is closed.
func (c *conn) closedParked() {
	p := c.srv.parker
	p.mu.Lock()
	id := c.parked.id
	p.mu.Unlock()
	if id == 0 || p.take(id) == nil {
		return
	}
	c.unparked()
	go c.woke(net.ErrClosed)
}

// unparked is the end of a park, once take returned c.
func (c *conn) unparked() {
	if c.parked.timer != nil {
		c.parked.timer.Stop()
	}
	c.srv.Stats.Parked.Add(-1)
}
