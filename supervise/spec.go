package supervise

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec is one process to supervise.
type Spec struct {
	// Name names the process within its supervisor, its log files (LogDir/NAME.log) and its
	// entry in the state file: letters, digits, '.', '_' and '-', at most 63 characters.
	Name string
	// Command is the argument vector. A first element without a '/' is looked up in the PATH
	// of Env (or, when Env has none, in DefaultPath); a relative one with a '/' is taken
	// relative to Dir.
	Command []string
	// Dir is the working directory, an absolute path; empty means "/".
	Dir string
	// Env is the whole environment of the process, "KEY=value" entries: nothing of the
	// supervisor's own environment is passed on (a node agent's may hold secrets).
	Env []string
	// User runs the process as this user (a name or a numeric uid) with the user's groups.
	// Only a supervisor running as root can do that; any other refuses a Spec with a User.
	User string
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL; zero means 10 s (Docker's
	// default; systemd waits 90 s).
	StopGrace time.Duration
	Restart   Restart
	Logs      Logs
}

// Restart says how a process that dies is started again. A zero field takes its default.
//
// The first death is followed by a restart at once. Every further death within Window of
// the restarts before it waits Backoff, doubled for each restart already made within Window
// (1 s, 2 s, 4 s, 8 s with the defaults) and capped at MaxBackoff. A death once Burst restarts
// have been made within Window puts the process in crashloop: the supervisor then tries again
// every MaxBackoff, never giving up (so a service whose dependency comes back recovers on its
// own, as Kubernetes' CrashLoopBackOff does), and the process stays in crashloop until one try
// runs for a whole Window.
type Restart struct {
	// Burst is how many restarts Window may hold before crashloop; default 5 (systemd's
	// StartLimitBurst).
	Burst int
	// Window is the span over which restarts are counted; default 60 s.
	Window time.Duration
	// Backoff is the wait before the second restart within Window, doubled for each later one;
	// default 1 s. A negative Backoff restarts at once every time until Burst.
	Backoff time.Duration
	// MaxBackoff caps Backoff and is the wait between tries in crashloop; default 2 min.
	MaxBackoff time.Duration
}

// Logs bounds a process's log files. A zero field takes its default.
type Logs struct {
	// MaxSize is the size at which NAME.log is rotated, and the most each older generation
	// holds; default 10 MiB.
	MaxSize int64
	// Keep is how many older generations (NAME.log.1 … NAME.log.Keep) are kept; default 3.
	Keep int
}

// Defaults and bounds. A Spec outside the bounds is refused: they are far beyond any sensible
// service and keep a hostile or mistaken manifest from turning the supervisor into a fork
// bomb or a disk filler.
const (
	DefaultStopGrace  = 10 * time.Second
	DefaultBurst      = 5
	DefaultWindow     = time.Minute
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 2 * time.Minute
	DefaultLogSize    = 10 << 20
	DefaultLogKeep    = 3
	// DefaultPath is the PATH a command is looked up in when Env has none (systemd's).
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

	maxStopGrace  = time.Hour
	maxBurst      = 100_000
	minWindow     = time.Second
	maxWindow     = 24 * time.Hour
	minMaxBackoff = time.Millisecond
	maxMaxBackoff = 24 * time.Hour
	minLogSize    = 4 << 10
	maxLogSize    = 1 << 30
	maxLogKeep    = 20
	maxArgs       = 4096
	maxEnv        = 4096
	// maxExecBytes bounds the arguments and environment together, under Linux's usual
	// ARG_MAX of 2 MiB.
	maxExecBytes = 1 << 20
)

var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// checkName refuses a process name that cannot safely name files.
func checkName(name string) error {
	if !nameRule.MatchString(name) {
		return fmt.Errorf("invalid process name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// withDefaults returns s with every zero field set to its default.
func (s Spec) withDefaults() Spec {
	if s.Dir == "" {
		s.Dir = "/"
	}
	if s.StopGrace == 0 {
		s.StopGrace = DefaultStopGrace
	}
	r := &s.Restart
	if r.Burst == 0 {
		r.Burst = DefaultBurst
	}
	if r.Window == 0 {
		r.Window = DefaultWindow
	}
	if r.Backoff == 0 {
		r.Backoff = DefaultBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	if s.Logs.MaxSize == 0 {
		s.Logs.MaxSize = DefaultLogSize
	}
	if s.Logs.Keep == 0 {
		s.Logs.Keep = DefaultLogKeep
	}
	return s
}

// validate checks a Spec that has its defaults.
func (s Spec) validate() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("process %s: %s", s.Name, fmt.Sprintf(format, args...))
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		return bad("empty command: give the program and its arguments")
	}
	if len(s.Command) > maxArgs {
		return bad("command has %d arguments; at most %d", len(s.Command), maxArgs)
	}
	if len(s.Env) > maxEnv {
		return bad("environment has %d entries; at most %d", len(s.Env), maxEnv)
	}
	size := 0
	for _, a := range s.Command {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("command argument %q holds a NUL byte", a)
		}
		size += len(a) + 1
	}
	for _, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return bad("environment entry %q: want KEY=value without NUL bytes", e)
		}
		size += len(e) + 1
	}
	if size > maxExecBytes {
		return bad("command and environment take %d bytes; at most %d", size, maxExecBytes)
	}
	if !filepath.IsAbs(s.Dir) {
		return bad("working directory %q is not an absolute path", s.Dir)
	}
	if s.StopGrace < 0 || s.StopGrace > maxStopGrace {
		return bad("stop grace %v: want between 0 and %v", s.StopGrace, maxStopGrace)
	}
	r := s.Restart
	if r.Burst < 1 || r.Burst > maxBurst {
		return bad("restart burst %d: want between 1 and %d", r.Burst, maxBurst)
	}
	if r.Window < minWindow || r.Window > maxWindow {
		return bad("restart window %v: want between %v and %v", r.Window, minWindow, maxWindow)
	}
	if r.MaxBackoff < minMaxBackoff || r.MaxBackoff > maxMaxBackoff {
		return bad("max backoff %v: want between %v and %v", r.MaxBackoff, minMaxBackoff, maxMaxBackoff)
	}
	if r.Backoff > r.MaxBackoff {
		return bad("restart backoff %v is above max backoff %v", r.Backoff, r.MaxBackoff)
	}
	if s.Logs.MaxSize < minLogSize || s.Logs.MaxSize > maxLogSize {
		return bad("log max size %d bytes: want between %d and %d", s.Logs.MaxSize, minLogSize, maxLogSize)
	}
	if s.Logs.Keep < 1 || s.Logs.Keep > maxLogKeep {
		return bad("log generations to keep %d: want between 1 and %d", s.Logs.Keep, maxLogKeep)
	}
	return nil
}

// fingerprint identifies what a process runs: a recorded process is adopted only by a Spec
// with the same fingerprint. Restart policy, grace and log limits are not part of it; they
// apply to an adopted process as they are.
func (s Spec) fingerprint() string {
	b, _ := json.Marshal(struct {
		Command []string
		Dir     string
		Env     []string
		User    string
	}{s.Command, s.Dir, s.Env, s.User})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// credential returns the credential to run as user, for a supervisor with effective uid euid;
// nil for no user.
func credential(name, username string, euid int) (*syscall.Credential, error) {
	if username == "" {
		return nil, nil
	}
	if euid != 0 {
		return nil, fmt.Errorf("process %s: running as user %q needs a supervisor running as root, and this one runs as uid %d; run the agent as root or drop the user", name, username, euid)
	}
	var u *user.User
	var err error
	if _, numErr := strconv.Atoi(username); numErr == nil {
		u, err = user.LookupId(username)
	} else {
		u, err = user.Lookup(username)
	}
	if err != nil {
		return nil, fmt.Errorf("process %s: user %q: %w", name, username, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("process %s: user %q has a non-numeric uid or gid: %w", name, username, err)
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("process %s: groups of user %q: %w", name, username, err)
	}
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			continue
		}
		c.Groups = append(c.Groups, uint32(g))
	}
	return c, nil
}

// resolve finds the program that command[0] names, as Spec.Command describes.
func (s Spec) resolve() (string, error) {
	prog := s.Command[0]
	if strings.Contains(prog, "/") {
		if !filepath.IsAbs(prog) {
			prog = filepath.Join(s.Dir, prog)
		}
		if err := executable(prog); err != nil {
			return "", fmt.Errorf("process %s: command %s: %w", s.Name, prog, err)
		}
		return prog, nil
	}
	path := DefaultPath
	for _, e := range s.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue // a relative PATH entry would depend on the working directory
		}
		if p := filepath.Join(d, prog); executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %s: command %q not found in PATH %s", s.Name, prog, path)
}

// executable reports why path is not an executable file, or nil.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not executable")
	}
	return nil
}
