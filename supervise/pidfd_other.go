//go:build !linux

package supervise

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// The supervisor needs Linux: pidfds to watch processes it adopts, /proc to identify them.
// These stand-ins let the module build elsewhere; Open refuses to run there.

var errNotLinux = errors.New("process supervision needs Linux")

func openPidfd(int) (*os.File, error)         { return nil, errNotLinux }
func waitPidfd(*os.File) error                { return errNotLinux }
func signalPidfd(*os.File, unix.Signal) error { return errNotLinux }
