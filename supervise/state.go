package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/sys/unix"
)

// The state file, StateDir/state.json, records each supervised process so that a later
// supervisor on the same directory can adopt it. It is written whole to a temporary file that
// is then renamed over it, so a reader sees the old state or the new, never a mix.
const (
	stateName    = "state.json"
	lockName     = "lock"
	stateVersion = 1
	// maxStateSize and maxRecords bound what a state file may hold; a larger one is refused.
	maxStateSize = 1 << 20
	maxRecords   = 10_000
	// maxPid is the largest pid Linux can hand out (PID_MAX_LIMIT on 64-bit).
	maxPid = 1 << 22
)

// state is the state file's content.
type state struct {
	Version int `json:"version"`
	// Boot is the kernel's boot id when the file was written: start times count from boot.
	Boot      string            `json:"boot"`
	Processes map[string]record `json:"processes"`
}

// record is one process in the state file.
type record struct {
	// Pid and StartTicks (field 22 of /proc/PID/stat) identify the running process together:
	// a pid alone may have been reused. Pid is 0 while no process runs (backoff, crashloop).
	Pid        int    `json:"pid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
	// Started is when the running process started, on the supervisor's clock.
	Started  time.Time `json:"started,omitzero"`
	Restarts int       `json:"restarts,omitempty"`
	// Spec is the fingerprint of the Spec the process was started from.
	Spec string `json:"spec"`
}

var fingerprintRule = regexp.MustCompile(`^[0-9a-f]{32}$`)

// decodeState parses and checks a state file.
func decodeState(b []byte) (state, error) {
	if len(b) > maxStateSize {
		return state{}, fmt.Errorf("%d bytes; at most %d", len(b), maxStateSize)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, err
	}
	if st.Version != stateVersion {
		return state{}, fmt.Errorf("version %d; this supervisor reads version %d", st.Version, stateVersion)
	}
	if len(st.Processes) > maxRecords {
		return state{}, fmt.Errorf("%d processes; at most %d", len(st.Processes), maxRecords)
	}
	for name, r := range st.Processes {
		if err := checkName(name); err != nil {
			return state{}, err
		}
		switch {
		case r.Pid < 0 || r.Pid > maxPid:
			return state{}, fmt.Errorf("process %s: pid %d out of range", name, r.Pid)
		case r.Pid == 1:
			return state{}, fmt.Errorf("process %s: pid 1 is init, never a supervised process", name)
		case r.Pid > 0 && r.StartTicks == 0:
			return state{}, fmt.Errorf("process %s: pid %d without a start time", name, r.Pid)
		case r.Restarts < 0:
			return state{}, fmt.Errorf("process %s: negative restart count", name)
		case !fingerprintRule.MatchString(r.Spec):
			return state{}, fmt.Errorf("process %s: spec fingerprint %q is not 32 hex digits", name, r.Spec)
		}
	}
	if st.Processes == nil {
		st.Processes = map[string]record{}
	}
	return st, nil
}

// readState reads the state file in dir; an empty state when there is none.
func readState(dir string) (state, error) {
	path := filepath.Join(dir, stateName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{Version: stateVersion, Processes: map[string]record{}}, nil
	}
	if err != nil {
		return state{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return state{}, err
	}
	st, err := decodeState(b)
	if err != nil {
		return state{}, fmt.Errorf("state file %s is damaged (%v); move it away to start afresh, and stop by hand the processes it recorded", path, err)
	}
	return st, nil
}

// writeState replaces the state file in dir atomically, readable by its owner only.
func writeState(dir string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockDir takes the directory's lock, held for the supervisor's life: two supervisors on one
// directory would adopt the same processes and overwrite each other's state.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another supervisor is running on %s; stop it first", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}
