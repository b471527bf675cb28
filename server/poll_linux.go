//go:build linux

package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// On Linux an idle agent stream costs no goroutine. One epoll instance waits on every stream's
// connection; when one has something to read, a worker reads what has come, without blocking,
// through TLS when the connection has it, and handles the frames. A goroutine parked in a read
// per stream held at least a 2 KiB stack and its descriptor for every idle agent, and reading
// TLS on it grew the stack to 4 KiB.

// pollConn is an accepted TCP connection that a stream can read without blocking.
type pollConn struct {
	*net.TCPConn
	raw      syscall.RawConn
	nonblock atomic.Bool // set once a stream owns the connection
	// drained is set once a read of the current turn found the socket emptied: it filled less
	// than it asked for, or there was nothing. The turn's later reads then say "nothing more"
	// without asking the kernel (through TLS too, which asks once more after every record); what
	// comes after that read starts a turn of its own through the poller. Only the reader of the
	// turn touches it; newTurn clears it.
	drained bool
	// hup is set once the poller has seen the peer close its side, or the socket's read side
	// shut (stream.end): the end of the stream is then there to read, and comes with no
	// further edge, so reads stop taking drained's word for it.
	hup atomic.Bool
}

// newTurn begins a reader's turn at the connection, after the poller found it readable.
func (c *pollConn) newTurn() { c.drained = false }

// pollable wraps c when the poller can watch it; net/http serves it as before, since the
// wrapper changes reads only once a stream has taken the connection over.
func pollable(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &pollConn{TCPConn: tc, raw: raw}
}

// takeOver returns the pollConn under a stream's connection, switched to reads that never
// wait, or nil when the connection cannot be polled.
func takeOver(c net.Conn) *pollConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	pc, ok := c.(*pollConn)
	if !ok {
		return nil
	}
	pc.nonblock.Store(true)
	return pc
}

// Read reads what the socket holds. Once nonblock is set it never waits: with nothing to read
// it returns os.ErrDeadlineExceeded, which TLS treats as a timeout it resumes after, keeping
// any partial record for the next read.
func (c *pollConn) Read(p []byte) (int, error) {
	if !c.nonblock.Load() {
		return c.TCPConn.Read(p)
	}
	if c.drained && !c.hup.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	var n int
	var errno error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, errno = syscall.Read(int(fd), p)
			if errno != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		c.drained = true
		return 0, os.ErrDeadlineExceeded
	case errno != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	c.drained = n < len(p)
	return n, nil
}

// unsent reports how many bytes written to the connection the peer has not yet acknowledged, or
// -1 when the kernel will not say.
func (c *pollConn) unsent() int {
	n := -1
	c.raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}

// poller watches the streams' connections with one epoll instance, edge-triggered: a stream is
// handed to a worker when something arrives, and a stream whose worker is still reading is
// marked to be read again instead, so no two workers ever read one stream. The epoll
// descriptor is itself watched by Go's poller, so the loop parks like any reader.
type poller struct {
	ep      *os.File
	raw     syscall.RawConn
	ready   func(*agentStream)
	mu      sync.Mutex
	streams map[uint64]*agentStream
	next    uint64
	done    chan struct{}
}

// A stream's reading state, in agentStream.reading.
const (
	idle    = iota // watched; no worker has it
	reading        // a worker has it
	again          // a worker has it, and more has come since it began
)

func newPoller(ready func(*agentStream)) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	raw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	p := &poller{ep: ep, raw: raw, ready: ready, streams: map[uint64]*agentStream{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// add watches as's connection, which as.pc holds; the caller is as's worker, so as is marked
// reading, and the worker's finished call decides whether it reads again.
func (p *poller) add(as *agentStream) error {
	p.mu.Lock()
	p.next++
	as.id = p.next
	p.streams[as.id] = as
	p.mu.Unlock()
	as.reading.Store(reading)
	var err error
	cerr := as.pc.raw.Control(func(fd uintptr) {
		err = p.raw.Control(func(epfd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(as.id)), Pad: int32(uint32(as.id >> 32))}
			err = os.NewSyscallError("epoll_ctl", unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev))
		})
	})
	return errors.Join(cerr, err)
}

// finished is called by as's worker when it has read all there was: it reports whether more
// came meanwhile, in which case the worker goes on reading.
func (p *poller) finished(as *agentStream) bool {
	if as.reading.CompareAndSwap(reading, idle) {
		return false
	}
	as.reading.Store(reading) // it was again: read once more
	return true
}

// remove stops watching as, before its connection is closed; its worker calls it.
func (p *poller) remove(as *agentStream) {
	p.mu.Lock()
	delete(p.streams, as.id)
	p.mu.Unlock()
	as.pc.raw.Control(func(fd uintptr) {
		p.raw.Control(func(epfd uintptr) {
			unix.EpollCtl(int(epfd), unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	})
}

func (p *poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	var werr error
	// The events are handled inside the one RawRead, which waits for Go's poller to find the
	// epoll descriptor readable whenever a wait returned fewer events than it had room for:
	// epoll then held no more, and every event queued after the wait makes the descriptor
	// readable anew. Asking again at once would mostly hear "none" (a system call a heartbeat),
	// and a fresh RawRead would forget a readiness noticed in between.
	p.raw.Read(func(epfd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(epfd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			for _, ev := range events[:n] {
				p.mu.Lock()
				as := p.streams[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
				p.mu.Unlock()
				if as != nil && ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					as.pc.hup.Store(true) // before a reader can be told: it reads to the end
				}
				if as != nil && p.arrived(as) {
					p.ready(as)
				}
			}
			if n < len(events) {
				return false
			}
		}
	})
	// RawRead returns when the epoll descriptor is closed, by stop.
	if werr != nil && !errors.Is(werr, unix.EBADF) {
		panic(os.NewSyscallError("epoll_wait", werr)) // a bad buffer: a bug
	}
}

// arrived records that something came for as, and reports whether a worker must be given it.
func (p *poller) arrived(as *agentStream) bool {
	for {
		switch as.reading.Load() {
		case idle:
			if as.reading.CompareAndSwap(idle, reading) {
				return true
			}
		case reading:
			if as.reading.CompareAndSwap(reading, again) {
				return false
			}
		default:
			return false
		}
	}
}

// stop ends the loop; every stream must have been removed.
func (p *poller) stop() {
	if p == nil {
		return
	}
	p.ep.Close()
	<-p.done
}
