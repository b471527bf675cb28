package check

import (
	"errors"

	"golang.org/x/sys/unix"
)

// canPin: Linux can wait for a child's exit without reaping it, so the child's pid — and with
// it its process group id — stays taken until the group has been killed.
const canPin = true

// waitPinned waits until process pid exits and leaves it a zombie for exec.Cmd.Wait to reap.
func waitPinned(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
