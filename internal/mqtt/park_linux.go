//go:build linux

package mqtt

import (
	"container/heap"
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
// (the one that removes it from conns, under mu): its socket becomes
// readable (run serves it again), its keep-alive deadline passes (the
// parker keeps the parked connections in a heap by deadline and wakes
// for the earliest: no timer per connection), or the server closes it
// (closeNow: a revocation, a takeover, the shutdown). The last two end it
// as a wait for the socket ending with that error would.
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
	// A pipe whose read end is in the set, written to wake wait: to stop,
	// or for a deadline earlier than the one it waits for.
	wake [2]int

	mu      sync.Mutex
	conns   map[uint64]*conn // parked, by park number (never 0: 0 is wake)
	due     deadlines        // the parked connections with a keep-alive deadline
	waiting time.Time        // the deadline wait waits for, zero for none
	last    uint64
	stopped bool // park refuses: closing, or epoll_wait failed

	closeOnce sync.Once
	done      chan struct{} // closed when wait has returned
}

// parkState is a conn's part in its server's parker, set as it parks
// (registered, by its reader) and under parker.mu (id, due).
type parkState struct {
	id         uint64 // the park number while parked, 0 otherwise
	registered bool   // the socket is in the epoll set: park re-arms it
	due        int    // 1 + its index in parker.due, 0 when not there
}

// deadlines is a heap (container/heap) of parked connections by
// keep-alive deadline (conn.deadline, which their readers set before
// they parked and set again only once woken).
type deadlines []*conn

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].deadline.Before(d[j].deadline) }
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].parked.due, d[j].parked.due = i+1, j+1
}

func (d *deadlines) Push(x any) {
	c := x.(*conn)
	*d = append(*d, c)
	c.parked.due = len(*d)
}

func (d *deadlines) Pop() any {
	old := *d
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	c.parked.due = 0
	return c
}

// socketReader is a nowReader that says which socket it found empty when
// ReadNow answered ErrWouldWait (TLSConn, Plain).
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
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // data 0: wake
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	go p.wait()
	return p, nil
}

func (p *parker) closeFDs() {
	syscall.Close(p.epfd)
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
}

// close stops wait and releases the epoll instance. The server calls it
// once every connection has ended; a connection parking later (none
// should) is closed.
func (p *parker) close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		syscall.Write(p.wake[1], wakeByte)
		<-p.done
		p.closeFDs()
	})
}

// wait reads the epoll set's events until close, serves each parked
// connection that became readable on a new goroutine, and ends the parks
// whose keep-alive deadline passed.
func (p *parker) wait() {
	defer close(p.done)
	var events [128]syscall.EpollEvent
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		timeout := -1
		p.waiting = time.Time{}
		if len(p.due) > 0 {
			p.waiting = p.due[0].deadline
			// In whole milliseconds, rounded up: woken early, wait would
			// find nothing due and wait again.
			timeout = int(max(0, (time.Until(p.waiting)+time.Millisecond-1)/time.Millisecond))
		}
		p.mu.Unlock()
		n, err := syscall.EpollWait(p.epfd, events[:], timeout)
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
				p.drain()
				continue
			}
			// Readable, its end, an error or a hang-up: the reader finds
			// out which.
			if c := p.take(id); c != nil {
				c.unparked()
				go c.run()
			}
		}
		p.expire()
	}
}

var wakeByte = []byte{1}

// drain reads what was written to the wake pipe.
func (p *parker) drain() {
	var b [64]byte
	for {
		if n, err := syscall.Read(p.wake[0], b[:]); n <= 0 || err != nil {
			return
		}
	}
}

// expire ends the parks whose keep-alive deadline passed, as a wait for
// the socket ends at the read deadline.
func (p *parker) expire() {
	now := time.Now()
	var ended []*conn
	p.mu.Lock()
	for len(p.due) > 0 && !p.due[0].deadline.After(now) {
		c := heap.Pop(&p.due).(*conn)
		delete(p.conns, c.parked.id)
		c.parked.id = 0
		ended = append(ended, c)
	}
	p.mu.Unlock()
	for _, c := range ended {
		c.unparked()
		go c.woke(os.ErrDeadlineExceeded)
	}
}

// fail ends every parked connection with err and parks no more.
func (p *parker) fail(err error) {
	p.mu.Lock()
	p.stopped = true
	conns := p.conns
	p.conns = map[uint64]*conn{}
	for _, c := range conns {
		c.parked.id, c.parked.due = 0, 0
	}
	p.due = nil
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
		if c.parked.due > 0 {
			heap.Remove(&p.due, c.parked.due-1)
		}
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
	earlier := false
	if !c.deadline.IsZero() {
		heap.Push(&p.due, c)
		// wait waits for a later deadline, or none: it must wake for this
		// one (at once if it passed already).
		if earlier = p.waiting.IsZero() || c.deadline.Before(p.waiting); earlier {
			p.waiting = c.deadline
		}
	}
	p.mu.Unlock()
	if earlier {
		syscall.Write(p.wake[1], wakeByte) // EAGAIN: a full pipe wakes it too
	}

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

// unparked counts the end of a park, once it was taken.
func (c *conn) unparked() { c.srv.Stats.Parked.Add(-1) }
