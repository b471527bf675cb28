package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/internal/pgtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
	"github.com/jackc/pgx/v5"
)

var pg = pgtest.New()

func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }

// open opens a store on url, closed when t ends.
func open(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var _ store.Store = (*Store)(nil)

// The shared suite, RunTx's tests included.
func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pg.DB(t)) })
}

// A database written by a newer Ferry is refused, with the words SQLite uses; an up-to-date one
// opens as it is.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	url := pg.DB(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, url); err != nil {
		t.Fatalf("open again: %v", err)
	}
	newer := strconv.Itoa(SchemaVersion() + 1)
	if _, err := s.pool.Exec(ctx, `UPDATE meta SET value = $1 WHERE key = 'schema_version'`, newer); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, url)
	want := fmt.Sprintf("database schema version %s is newer than this ferry understands (%d); run a newer ferry", newer, SchemaVersion())
	if err == nil || err.Error() != want {
		t.Fatalf("open a newer database: %v; want %q", err, want)
	}

	// SQLite says the same, but for its own version numbers.
	file := filepath.Join(t.TempDir(), "ferry.db")
	lite, err := store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	lite.Close()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE meta SET value = ? WHERE key = 'schema_version'`, store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, liteErr := store.OpenSQLite(ctx, file)
	digits := regexp.MustCompile(`[0-9]+`)
	if liteErr == nil || digits.ReplaceAllString(liteErr.Error(), "N") != digits.ReplaceAllString(want, "N") {
		t.Fatalf("SQLite refuses a newer database with %v; PostgreSQL with %q", liteErr, want)
	}
}

// Replicas that start together on an empty database migrate it once and all open.
func TestOpenTogether(t *testing.T) {
	url := pg.DB(t)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), url)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	s := open(t, url)
	var v string
	if err := s.pool.QueryRow(context.Background(), `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil || v != strconv.Itoa(SchemaVersion()) {
		t.Fatalf("schema version %q, %v; want %d", v, err, SchemaVersion())
	}
}

// Times are kept to the microsecond: what a write returns is what the log reads back.
func TestEventTimeAsStored(t *testing.T) {
	ctx := context.Background()
	s := open(t, pg.DB(t))
	at := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	ev, err := store.AppendEvent(ctx, s, api.NewEvent(at, "test", "x", nil))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 0, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("Events = %+v, %v", evs, err)
	}
	if !ev.Time.Equal(evs[0].Time) || ev.Time.Location() != time.UTC || evs[0].Time.Location() != time.UTC || !ev.Time.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("written %s, returned %s, read %s", at, ev.Time, evs[0].Time)
	}
	if ev.Data != nil || evs[0].Data != nil {
		t.Fatalf("an event without data: returned %q, read %q", ev.Data, evs[0].Data)
	}
}

// follow collects what a feed on s returns until ctx ends.
func follow(ctx context.Context, s *Store, since int64) <-chan []api.Event {
	out := make(chan []api.Event)
	go func() {
		defer close(out)
		f := store.Watch(s, since)
		for {
			evs, err := f.Next(ctx)
			if err != nil {
				return
			}
			select {
			case out <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// receive takes events from got until it has n of them.
func receive(t *testing.T, ctx context.Context, got <-chan []api.Event, n int) []api.Event {
	t.Helper()
	var out []api.Event
	for len(out) < n {
		select {
		case evs := <-got:
			out = append(out, evs...)
		case <-ctx.Done():
			t.Fatalf("received %d events of %d: %v", len(out), n, ctx.Err())
		}
	}
	return out
}

// A replica whose listening connection dies misses the notifications of the writes made while
// it is down, and still gives its followers every event, in order, once it listens again.
func TestLostNotification(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := pg.DB(t)
	pids := make(chan uint32, 2)     // of each listening connection opened
	redialing := make(chan struct{}) // the listener is trying to listen again
	gate := make(chan struct{})      // closed to let it
	first := true
	a := open(t, url, func(s *Store) {
		dial := s.dial
		s.dial = func(ctx context.Context) (*pgx.Conn, error) {
			if !first {
				close(redialing)
				<-gate
			}
			first = false
			conn, err := dial(ctx)
			if err == nil {
				pids <- conn.PgConn().PID()
			}
			return conn, err
		}
	})
	b := open(t, url)
	got := follow(ctx, a, 0)
	var want []api.Event
	write := func(subject string) {
		t.Helper()
		ev, err := store.AppendEvent(ctx, b, api.NewEvent(time.Now(), "test", subject, nil))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev)
	}

	write("e1")
	all := receive(t, ctx, got, 1) // woken by b's notification: a wrote nothing

	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, <-pids); err != nil {
		t.Fatal(err)
	}
	<-redialing
	woken := a.Changed()
	write("e2")
	write("e3")
	write("e4")
	select {
	case <-woken:
		t.Fatal("a replica that is not listening was woken")
	default:
	}
	close(gate)
	<-pids
	select {
	case <-woken: // listening again, it wakes its followers to catch up
	case <-ctx.Done():
		t.Fatal("not woken after listening again")
	}
	all = append(all, receive(t, ctx, got, 3)...)
	write("e5")
	all = append(all, receive(t, ctx, got, 1)...)

	if len(all) != len(want) {
		t.Fatalf("followed %d events, want %d", len(all), len(want))
	}
	for i := range want {
		if all[i].ID != want[i].ID || all[i].Subject != want[i].Subject {
			t.Fatalf("event %d: followed %d %s, want %d %s", i, all[i].ID, all[i].Subject, want[i].ID, want[i].Subject)
		}
	}
}

// With writers on two replicas committing at once, a follower on a third gets every event of
// the log, once, in order: no event commits with an id below one a reader has already seen.
func TestConcurrentWritersFollowerSkipsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := pg.DB(t)
	replicas := []*Store{open(t, url), open(t, url)}
	follower := open(t, url)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	got := follow(fctx, follower, 0)

	// A reader that reads the log as fast as it can while the writers write, the likeliest to
	// catch an id committed after a greater one.
	done := make(chan struct{})
	reader := make(chan []api.Event, 1)
	go func() {
		var read []api.Event
		defer func() { reader <- read }()
		for since, finished := int64(0), false; !finished; {
			select {
			case <-done:
				finished = true // one more read, after the last commit
			default:
			}
			evs, err := follower.Events(ctx, since, 100000)
			if err != nil {
				t.Error(err)
				return
			}
			if len(evs) > 0 {
				read, since = append(read, evs...), evs[len(evs)-1].ID
			}
		}
	}()

	const writers, rounds, perTx = 6, 40, 5
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		s := replicas[w%len(replicas)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				subject := fmt.Sprintf("w%d-%d", w, i)
				var err error
				if i%2 == 0 {
					_, err = store.AppendEvent(ctx, s, api.NewEvent(time.Now(), "test", subject, nil))
				} else { // several events in one transaction: a wider window between id and commit
					err = s.write(ctx, func(tx writeTx) error {
						for j := 0; j < perTx; j++ {
							if _, err := tx.appendEvent(ctx, api.NewEvent(time.Now(), "test", fmt.Sprintf("%s.%d", subject, j), nil)); err != nil {
								return err
							}
						}
						return nil
					})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	read := <-reader
	last, err := follower.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var followed []api.Event
	for len(followed) == 0 || followed[len(followed)-1].ID < last {
		select {
		case evs := <-got:
			followed = append(followed, evs...)
		case <-ctx.Done():
			t.Fatalf("the follower reached event %d of %d", followed[len(followed)-1].ID, last)
		}
	}
	log, err := follower.Events(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if want := writers * (rounds/2 + rounds/2*perTx); len(log) != want {
		t.Fatalf("log has %d events, want %d", len(log), want)
	}
	for who, evs := range map[string][]api.Event{"the follower": followed, "the reader": read} {
		if len(evs) != len(log) {
			t.Fatalf("%s got %d events of the log's %d", who, len(evs), len(log))
		}
		for i := range log {
			if evs[i].ID != log[i].ID {
				t.Fatalf("%s: event %d has id %d, the log's %d", who, i, evs[i].ID, log[i].ID)
			}
		}
	}
}

// A node's assignments come with it, with what the release says of its blob and withdrawal,
// whether one node is read or all of them.
func TestNodeAssignments(t *testing.T) {
	ctx := context.Background()
	s := open(t, pg.DB(t))
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: time.Now()}); err != nil {
			return err
		}
		for _, name := range []string{"n1", "n2"} {
			if err := tx.InsertNode("ams", store.NodeRecord{Name: name, PublicKey: "pk-" + name}, time.Now()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Releases and assignments are written here by hand until this backend writes them.
	if _, err := s.pool.Exec(ctx, `INSERT INTO releases (app, version, class, blob, size, signature, manifest, created_at, withdrawn)
		VALUES ('hello', '1.0.0', 'minor', 'sum1', 7, 'sig1', '{}', now(), NULL), ('hello', '0.9.0', 'minor', 'sum0', 5, '', '{}', now(), 'bad');
		INSERT INTO assignments (node, app, version, assigned_at) VALUES ('n1', 'hello', '1.0.0', now()), ('n2', 'hello', '0.9.0', now())`); err != nil {
		t.Fatal(err)
	}
	want := map[string]api.Assignment{
		"n1": {App: "hello", Version: "1.0.0", SHA256: "sum1", Size: 7, Signature: "sig1"},
		"n2": {App: "hello", Version: "0.9.0", SHA256: "sum0", Size: 5, Withdrawn: "bad"},
	}
	check := func(how string, nodes ...api.Node) {
		t.Helper()
		for _, n := range nodes {
			if len(n.Assigned) != 1 || n.Assigned[0] != want[n.Name] {
				t.Fatalf("%s: %s assigned %+v, want %+v", how, n.Name, n.Assigned, want[n.Name])
			}
		}
	}
	n, err := s.Node(ctx, "n2")
	if err != nil {
		t.Fatal(err)
	}
	check("Node", n)
	all, err := s.Nodes(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("Nodes = %+v, %v", all, err)
	}
	check("Nodes", all...)
}

// freezable is a connection that can go silent, as one to a host that vanished without a word
// does: what it sends is lost and nothing comes back, until a deadline ends a read.
type freezable struct {
	net.Conn
	frozen atomic.Bool
}

func (c *freezable) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.frozen.Load() {
			return n, err
		}
	}
}

func (c *freezable) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// A listening connection that goes quiet is pinged; one that answers goes on listening, one
// that has silently died is replaced, and the followers catch up on what it missed.
func TestSilentListenerReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := pg.DB(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *freezable, 4)
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		f := &freezable{Conn: c}
		conns <- f
		return f, nil
	}
	clk := clock.NewFake(time.Now())
	a := open(t, url, WithClock(clk), func(s *Store) {
		s.dial = func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, cfg.Copy()) }
	})
	listening := <-conns
	b := open(t, url)
	got := follow(ctx, a, 0)
	write := func(subject string) api.Event {
		t.Helper()
		ev, err := store.AppendEvent(ctx, b, api.NewEvent(time.Now(), "test", subject, nil))
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: not woken", what)
		}
	}

	// Quiet, then pinged: the connection answers and goes on listening.
	if err := clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(listenCheck)
	woken := a.Changed()
	write("e1")
	wait("after a ping that was answered", woken)
	receive(t, ctx, got, 1)
	select {
	case c := <-conns:
		t.Fatalf("a connection that answered was replaced by %v", c.RemoteAddr())
	default:
	}

	// Silent: writes are not heard; the ping goes unanswered, a new connection listens and the
	// follower catches up.
	listening.frozen.Store(true)
	woken = a.Changed()
	e2 := write("e2")
	if err := clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
		t.Fatal("woken through a silent connection")
	default:
	}
	clk.Advance(listenCheck) // quiet: ping
	if err := clk.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(listenCheck) // unanswered: replaced
	wait("after the silent connection was replaced", woken)
	<-conns
	if evs := receive(t, ctx, got, 1); evs[0].ID != e2.ID {
		t.Fatalf("caught up with %+v, want %d", evs, e2.ID)
	}
}

// Unavailable tells a database that cannot be reached from other failures.
func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = pgx.Connect(context.Background(), "postgres://ferry@"+addr+"/ferry?sslmode=disable&connect_timeout=5")
	if err == nil || !Unavailable(err) {
		t.Fatalf("a refused connection: %v, Unavailable %v", err, Unavailable(err))
	}
	for _, err := range []error{errors.New("syntax error"), store.ErrNotFound, fmt.Errorf("node %q %w", "x", store.ErrNotFound)} {
		if Unavailable(err) {
			t.Fatalf("Unavailable(%v)", err)
		}
	}
}
