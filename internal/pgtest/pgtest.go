// Package pgtest gives tests throw-away PostgreSQL databases, one per test: on the server that
// FERRY_TEST_POSTGRES names when it is set, otherwise on a cluster of the test binary's own that
// initdb makes in a temporary directory, started on first use and stopped when the package's
// tests end.
//
//	var pg = pgtest.New()
//
//	func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }
//
//	func TestX(t *testing.T) { url := pg.DB(t) ... }
//
// A program that is not a test (a benchmark harness) starts a cluster with Start and takes
// databases with NewDB.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that points the tests at an existing server instead of
// a cluster of their own: a URL or key=value connection string whose user may create databases.
const EnvURL = "FERRY_TEST_POSTGRES"

// Bounds of the waits on the cluster; each is an upper limit, not a pause.
const (
	startTimeout = 2 * time.Minute // initdb and the server's recovery on a slow, busy machine
	stopTimeout  = time.Minute     // fast shutdown before the server is killed
	adminTimeout = time.Minute     // CREATE and DROP DATABASE
)

// Cluster hands out databases. Its server is started by the first DB call.
type Cluster struct {
	once  sync.Once
	err   error
	admin string                 // connection string of a database to create databases from
	dbURL func(db string) string // connection string of database db
	local *server                // nil when the databases come from EnvURL
}

// New returns a Cluster that starts nothing until a test asks for a database.
func New() *Cluster { return &Cluster{} }

// Options configure a cluster that Start starts.
type Options struct {
	// URL, when set, is an existing server to make the databases on instead of starting one: a
	// URL or key=value connection string whose user may create databases.
	URL string
	// Settings are name=value server settings for a cluster of its own, applied after pgtest's
	// defaults, which turn durability off (fsync, synchronous_commit and full_page_writes):
	// a benchmark that compares with a durable store turns them back on here.
	Settings []string
}

// Start starts a cluster for a program that is not a test, or connects to the server that
// o.URL names; Stop ends it.
func Start(o Options) (*Cluster, error) {
	c := New()
	c.once.Do(func() { c.err = c.startAt(o.URL, o.Settings) })
	if c.err != nil {
		return nil, c.err
	}
	return c, nil
}

// Main runs the package's tests, then stops the cluster's own server if one was started; it
// returns the exit code for os.Exit.
func (c *Cluster) Main(m *testing.M) int {
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stop stops the cluster's own server, if one was started, and removes its files.
func (c *Cluster) Stop() error {
	if c.local == nil {
		return nil
	}
	return c.local.stop()
}

// PID is the process id of the cluster's own server (the postmaster, whose children are the
// backends), or 0 when its databases are on another server.
func (c *Cluster) PID() int {
	if c.local == nil {
		return 0
	}
	return c.local.cmd.Process.Pid
}

// DB creates an empty database for t, dropped when t ends, and returns its connection string.
func (c *Cluster) DB(t testing.TB) string {
	t.Helper()
	url, drop, err := c.NewDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return url
}

// NewDB creates an empty database and returns its connection string and a function that drops
// it, ending its sessions; for programs that are not tests, which have no t.Cleanup.
func (c *Cluster) NewDB() (url string, drop func() error, err error) {
	c.once.Do(func() { c.err = c.start() })
	if c.err != nil {
		return "", nil, c.err
	}
	name := "ferry_test_" + randomHex(8)
	if err := c.exec("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create test database: %w", err)
	}
	drop = func() error {
		if err := c.exec("DROP DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop test database: %w", err)
		}
		return nil
	}
	return c.dbURL(name), drop, nil
}

// exec runs one statement on the admin database, on a connection of its own.
func (c *Cluster) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func (c *Cluster) start() error {
	if err := c.startAt(os.Getenv(EnvURL), nil); err != nil {
		return fmt.Errorf("%w (or set %s to a server's URL)", err, EnvURL)
	}
	return nil
}

// startAt uses the server at u, or starts one of its own with settings when u is empty.
func (c *Cluster) startAt(u string, settings []string) error {
	if u != "" {
		c.admin = u
		c.dbURL = func(db string) string { return withDatabase(u, db) }
		return nil
	}
	s, err := startServer(settings)
	if err != nil {
		return fmt.Errorf("throw-away PostgreSQL cluster: %w (make deps installs PostgreSQL)", err)
	}
	c.local = s
	c.admin = s.url("postgres")
	c.dbURL = s.url
	return nil
}

// withDatabase returns the connection string conn with its database set to db.
func withDatabase(conn, db string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		if u, err := url.Parse(conn); err == nil {
			u.Path = "/" + db
			return u.String()
		}
	}
	return conn + " dbname=" + db // key=value form: a later key overrides an earlier one
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// server is a PostgreSQL server of the test binary's own: its data directory and unix socket
// in a temporary directory, no TCP port, trust authentication for its one role.
type server struct {
	dir    string // holds the data directory, the socket and nothing else
	cmd    *exec.Cmd
	exited chan struct{} // closed when the server process has ended
	log    *tail
}

const role = "ferry"

func (s *server) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(role), Path: "/" + db,
		RawQuery: url.Values{"host": {s.dir}, "sslmode": {"disable"}}.Encode()}
	return u.String()
}

// startServer runs initdb and starts the server with settings (name=value) after its own, as an
// unprivileged user when the tests run as root (PostgreSQL refuses to run as root).
func startServer(settings []string) (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := makeDir(cred)
	if err != nil {
		return nil, err
	}
	s := &server{dir: dir, exited: make(chan struct{}), log: &tail{max: 16 << 10}}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	initdb := s.command(ctx, cred, filepath.Join(bin, "initdb"), "-D", data, "-U", role, "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	args := []string{"-D", data, "-k", dir,
		"-c", "listen_addresses=", "-c", "lc_messages=C", "-c", "max_connections=300",
		// Durability is of no use to a throw-away cluster; speed is.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"}
	for _, kv := range settings {
		args = append(args, "-c", kv) // a later -c of the same name wins
	}
	s.cmd = s.command(context.Background(), cred, filepath.Join(bin, "postgres"), args...)
	// The server goes down with the test binary, however that ends (a panic, a test timeout).
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	ready := make(chan struct{})
	go s.readLog(stderr, ready)
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
	case <-s.exited:
		return nil, fmt.Errorf("postgres exited at start: %s\n%s", s.cmd.ProcessState, s.log)
	case <-ctx.Done():
		s.kill()
		return nil, fmt.Errorf("postgres not ready after %s:\n%s", startTimeout, s.log)
	}
	ok = true
	return s, nil
}

// readLog keeps the tail of the server's log and closes ready at the line that says the server
// accepts connections (lc_messages=C makes it English).
func (s *server) readLog(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		s.log.add(line)
		if ready != nil && strings.Contains(line, "database system is ready to accept connections") {
			close(ready)
			ready = nil
		}
	}
	io.Copy(io.Discard, r)
}

// stop shuts the server down (fast shutdown: sessions are ended) and removes its directory.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGINT)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	var err error
	select {
	case <-s.exited:
	case <-t.C:
		s.kill()
		err = fmt.Errorf("postgres did not stop within %s; killed it", stopTimeout)
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// command runs as cred (nil: as this process), in the cluster's directory, with a plain
// environment: the C locale, and no PG* variables of the caller's.
func (s *server) command(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir // the caller's working directory may be closed to the server's user
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "LANG=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// binDir finds initdb: on PATH, or in Debian's /usr/lib/postgresql/VERSION/bin (newest first),
// where the postgresql package puts it.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real // a link on PATH: its postgres is beside the file it points to
		}
		return filepath.Dir(p), nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errors.New("initdb not found on PATH nor in /usr/lib/postgresql/*/bin")
	}
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return filepath.Dir(found[0]), nil
}

// credential returns the user to run PostgreSQL as: nil (this process's) unless it is root;
// then the postgres user that Debian's package makes, or else nobody.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

// maxSocketDir keeps the socket's path (DIR/.s.PGSQL.5432) within the 107 bytes a unix socket
// address holds.
const maxSocketDir = 90

// makeDir makes the cluster's directory, owned by cred's user, where that user can reach it:
// under the temporary directory, or under /tmp when that one is closed to the user or its path
// too long for a socket.
func makeDir(cred *syscall.Credential) (string, error) {
	base := os.TempDir()
	if len(base) > maxSocketDir-len("/ferry-pg-0123456789") || (cred != nil && !reachable(base, cred)) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "ferry-pg-")
	if err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// reachable reports whether cred's user may enter dir: every directory on its path lets the user
// search it.
func reachable(dir string, cred *syscall.Credential) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err != nil {
			return false
		}
		switch {
		case st.Uid == cred.Uid:
			if st.Mode&0o100 == 0 {
				return false
			}
		case st.Gid == cred.Gid:
			if st.Mode&0o010 == 0 {
				return false
			}
		case st.Mode&0o001 == 0:
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// tail keeps the last max bytes of lines written to it, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.WriteString(line)
	t.buf.WriteByte('\n')
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
