package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// portClaims keeps the ports this agent gave apps from being given again by another agent on
// the same machine. A port the kernel says is free stays free only until something binds it,
// and a service binds its port well after its agent picked it: two agents picking at once could
// hand out the same port. So an agent claims each port it gives by holding a lock (flock) on a
// file named after it in a directory all agents of the machine share; the kernel drops the lock
// when the agent's process ends, so a claim never outlives its agent. A port already bound by a
// running service needs no claim: the kernel does not hand it out.
type portClaims struct {
	dir string

	mu   sync.Mutex
	held map[int]*os.File
	warn sync.Once
	log  func(msg string, args ...any)
}

// defaultClaimDir is where the agents of a machine claim ports.
func defaultClaimDir() string { return filepath.Join(os.TempDir(), "ferry-ports") }

func newPortClaims(dir string, log func(string, ...any)) *portClaims {
	return &portClaims{dir: dir, held: map[int]*os.File{}, log: log}
}

// claim reports whether port n is this agent's to give: held already, or claimed now. When
// the claims directory cannot be used the agent cannot coordinate, says so once, and goes on
// as if the claim were granted.
func (c *portClaims) claim(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[n] != nil {
		return true
	}
	f, err := c.open(n)
	if err != nil {
		c.warn.Do(func() {
			c.log("port claims unavailable: agents on this machine may pick the same port", "dir", c.dir, "err", err)
		})
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false // another agent's
		}
		c.warn.Do(func() {
			c.log("port claims unavailable: agents on this machine may pick the same port", "dir", c.dir, "err", err)
		})
		return true
	}
	c.held[n] = f
	return true
}

func (c *portClaims) open(n int) (*os.File, error) {
	// World-writable and sticky, like /tmp: agents of several users share it.
	switch err := os.Mkdir(c.dir, 0o777|os.ModeSticky); {
	case err == nil:
		if err := os.Chmod(c.dir, 0o777|os.ModeSticky); err != nil { // past the umask
			return nil, err
		}
	case !errors.Is(err, os.ErrExist):
		return nil, err
	}
	// Read-only is enough for flock, and lets agents of other users lock a file one created;
	// the files hold nothing.
	return os.OpenFile(filepath.Join(c.dir, strconv.Itoa(n)), os.O_RDONLY|os.O_CREATE, 0o644)
}

// release gives up the claims on ports no app holds any more.
func (c *portClaims) release(ports ...int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range ports {
		if f := c.held[n]; f != nil {
			f.Close() // drops the lock; the file stays for the next claimant
			delete(c.held, n)
		}
	}
}

// close gives up every claim (the agent stops).
func (c *portClaims) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n, f := range c.held {
		f.Close()
		delete(c.held, n)
	}
}
