package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// SQLite is the embedded store: one database file in WAL mode with foreign keys on and full
// synchronous commits, so an acknowledged write survives a kill -9 or a power cut.
type SQLite struct {
	w       *sql.DB   // the single writer connection
	r       *sql.DB   // readers
	changes Broadcast // fired after each commit
	lock    *os.File  // held open while the database is: one server per database
	tail    tail      // the newest events, for the feed's followers
	hot     hotStatements
	// committing is held from a commit until its events are in the tail.
	committing sync.Mutex
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the database at file and applies pending migrations.
// A database written by a newer Ferry is refused.
func OpenSQLite(ctx context.Context, file string) (*SQLite, error) {
	lock, err := lockFile(file)
	if err != nil {
		return nil, err
	}
	s, err := openSQLite(ctx, file)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openSQLite(ctx context.Context, file string) (*SQLite, error) {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "foreign_keys(1)", "busy_timeout(10000)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	w, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	q.Del("_txlock")
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	s := &SQLite{w: w, r: r}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	last, err := s.LastEventID(ctx)
	if err == nil {
		err = s.prepareHot(ctx)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.tail.start(last)
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	var err error
	for _, st := range []*sql.Stmt{s.hot.insertEvents, s.hot.nodeApps, s.hot.setNodeApps} {
		if st != nil {
			err = errors.Join(err, st.Close())
		}
	}
	err = errors.Join(err, s.r.Close(), s.w.Close())
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
	}
	return err
}

// migrations returns the embedded migration scripts in order; script N takes the schema to N.
func migrations() ([]string, error) { return ReadMigrations(migrationFS, "migrations") }

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int {
	m, _ := migrations()
	return len(m)
}

func (s *SQLite) migrate(ctx context.Context) error {
	scripts, err := migrations()
	if err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer tx.Rollback()
	var have int
	var exists int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'`).Scan(&exists); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if exists == 1 {
		var v string
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key='schema_version'`).Scan(&v)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if have, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("bad schema version %q in database", v)
		}
	}
	if err := CheckSchemaVersion(have, len(scripts)); err != nil {
		return err
	}
	for v := have; v < len(scripts); v++ {
		if _, err := tx.ExecContext(ctx, scripts[v]); err != nil {
			return fmt.Errorf("migration %d: %w", v+1, err)
		}
	}
	if have < len(scripts) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema_version', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(len(scripts))); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// hotStatements are the statements of the writes every agent report makes (its events, and the
// node's app report read and written), prepared once on the writer's connection: SQLite then
// runs them without parsing them again, which was half of their cost.
type hotStatements struct {
	insertEvents, nodeApps, setNodeApps *sql.Stmt
}

const (
	insertEventsSQL = `INSERT INTO events (time, type, subject, data, actor, role, source)
		SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6
		FROM json_each(?) ORDER BY key`
	nodeAppsSQL    = `SELECT apps FROM nodes WHERE name = ? AND status != 'revoked'`
	setNodeAppsSQL = `UPDATE nodes SET apps = ? WHERE name = ? AND status != 'revoked'`
)

func (s *SQLite) prepareHot(ctx context.Context) error {
	var err error
	prepare := func(query string) *sql.Stmt {
		st, perr := s.w.PrepareContext(ctx, query)
		err = errors.Join(err, perr)
		return st
	}
	s.hot = hotStatements{insertEvents: prepare(insertEventsSQL), nodeApps: prepare(nodeAppsSQL), setNodeApps: prepare(setNodeAppsSQL)}
	return err
}

// tx runs fn in a write transaction and commits it.
func (s *SQLite) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.txEvents(ctx, func(tx *sql.Tx, _ *[]api.Event) error { return fn(tx) })
}

// txEvents is tx whose fn notes the events it appends, for the tail.
func (s *SQLite) txEvents(ctx context.Context, fn func(*sql.Tx, *[]api.Event) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var added []api.Event
	if err := fn(tx, &added); err != nil {
		return err
	}
	// The tail takes the events in the order they were committed: commits are one at a time,
	// but the writer's connection is free for the next as soon as this one returns.
	s.committing.Lock()
	defer s.committing.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	s.tail.add(added)
	s.changes.Fire()
	return nil
}

// Lead returns at once: a SQLite database has one server, which leads for as long as ctx lasts.
func (s *SQLite) Lead(ctx context.Context) (context.Context, error) { return ctx, ctx.Err() }

// Changed returns a channel closed at the next commit.
func (s *SQLite) Changed() <-chan struct{} { return s.changes.Wait() }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTS(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with plain maps and structs
	}
	return string(b)
}

// withActor sets e's actor to the one ctx carries (System when none), replacing whatever e held:
// the actor of an event is always that of the request that wrote it.
func withActor(ctx context.Context, e api.Event) api.Event {
	a := ActorFrom(ctx)
	e.Actor, e.Role, e.Source = a.ID, a.Role, a.Source
	return e
}

// insertEventArgs returns an event's column values, in the order appendEvents inserts them.
func insertEventArgs(e api.Event) []any {
	data := string(e.Data)
	if data == "" {
		data = "{}"
	}
	return []any{ts(e.Time), e.Type, e.Subject, data, e.Actor, e.Role, e.Source}
}

// SpendNonce records a nonce as spent until expires; false when it already is. Each call also
// deletes up to MaxPurgedNonces records that expired before now, oldest first, through the
// index on expires_at.
func (s *SQLite) SpendNonce(ctx context.Context, nonce string, expires, now time.Time) (bool, error) {
	if nonce == "" || len(nonce) > MaxNonceLen {
		return false, fmt.Errorf("nonce of %d bytes: want 1 to %d", len(nonce), MaxNonceLen)
	}
	spent := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM spent_nonces WHERE nonce IN
			(SELECT nonce FROM spent_nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ?)`, now.UnixNano(), MaxPurgedNonces); err != nil {
			return err
		}
		// A record that expired but was not purged yet no longer counts.
		res, err := tx.ExecContext(ctx, `INSERT INTO spent_nonces (nonce, expires_at) VALUES (?, ?)
			ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE spent_nonces.expires_at < ?`,
			nonce, expires.UnixNano(), now.UnixNano())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		spent = n == 1
		return err
	})
	if err != nil {
		return false, err
	}
	return spent, nil
}

const siteCols = `s.name, s.tier, s.lat, s.lon, s.contact, s.labels, s.created_at`

func scanSite(sc interface{ Scan(...any) error }) (api.Site, error) {
	var st api.Site
	var lat, lon sql.NullFloat64
	var lbl, created string
	if err := sc.Scan(&st.Name, &st.Tier, &lat, &lon, &st.Contact, &lbl, &created); err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(lbl), &st.Labels); err != nil {
		return st, fmt.Errorf("site %s labels: %w", st.Name, err)
	}
	if lat.Valid && lon.Valid {
		st.Lat, st.Lon = &lat.Float64, &lon.Float64
	}
	st.CreatedAt = parseTS(created)
	return st, nil
}

// Sites lists sites by name, with node counts by status.
func (s *SQLite) Sites(ctx context.Context) ([]api.Site, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+siteCols+` FROM sites s ORDER BY s.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Site
	for rows.Next() {
		st, err := scanSite(rows)
		if err != nil {
			return nil, err
		}
		st.Nodes = map[string]int{}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	counts, err := s.r.QueryContext(ctx, `SELECT site, status, count(*) FROM nodes GROUP BY site, status`)
	if err != nil {
		return nil, err
	}
	defer counts.Close()
	return out, ScanNodeCounts(counts, out)
}

// Site returns one site with its node counts.
func (s *SQLite) Site(ctx context.Context, name string) (api.Site, error) {
	st, err := scanSite(s.r.QueryRowContext(ctx, `SELECT `+siteCols+` FROM sites s WHERE s.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("site %q %w", name, ErrNotFound)
	}
	if err != nil {
		return st, err
	}
	st.Nodes = map[string]int{}
	rows, err := s.r.QueryContext(ctx, `SELECT status, count(*) FROM nodes WHERE site = ? GROUP BY status`, name)
	if err != nil {
		return st, err
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return st, err
		}
		st.Nodes[status] = n
	}
	return st, rows.Err()
}

const tokenCols = `id, secret_hash, kind, coalesce(site, ''), role, uses_left, expires_at, created_at, description`

func scanToken(sc interface{ Scan(...any) error }) (TokenRecord, error) {
	var t TokenRecord
	var uses sql.NullInt64
	var exp sql.NullString
	var created string
	err := sc.Scan(&t.ID, &t.SecretHash, &t.Kind, &t.Site, &t.Role, &uses, &exp, &created, &t.Description)
	if uses.Valid {
		u := int(uses.Int64)
		t.UsesLeft = &u
	}
	if exp.Valid {
		e := parseTS(exp.String)
		t.ExpiresAt = &e
	}
	t.CreatedAt = parseTS(created)
	return t, err
}

// Token returns one token by id.
func (s *SQLite) Token(ctx context.Context, id string) (TokenRecord, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token %q %w", id, ErrNotFound)
	}
	return t, err
}

// Tokens lists all tokens, oldest first.
func (s *SQLite) Tokens(ctx context.Context) ([]TokenRecord, error) { return tokens(ctx, s.r) }

func tokens(ctx context.Context, q querier) ([]TokenRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TokenRecord
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

const nodeCols = `n.name, n.site, s.tier, n.public_key, n.status, n.labels, s.labels, n.facts, n.apps, n.generation, n.last_seen, n.enrolled_at`

// scanNode reads a node's row; its assignments are the caller's to fill (assignedOf, assignedAll).
func scanNode(sc interface{ Scan(...any) error }) (api.Node, error) {
	var n api.Node
	var lbl, siteLbl, facts, apps, enrolled string
	var seen sql.NullString
	if err := sc.Scan(&n.Name, &n.Site, &n.Tier, &n.PublicKey, &n.Status, &lbl, &siteLbl, &facts, &apps, &n.Generation, &seen, &enrolled); err != nil {
		return n, err
	}
	if err := json.Unmarshal([]byte(siteLbl), &n.SiteLabels); err != nil {
		return n, fmt.Errorf("node %s site labels: %w", n.Name, err)
	}
	if err := json.Unmarshal([]byte(apps), &n.Apps); err != nil {
		return n, fmt.Errorf("node %s apps: %w", n.Name, err)
	}
	if err := json.Unmarshal([]byte(lbl), &n.Labels); err != nil {
		return n, fmt.Errorf("node %s labels: %w", n.Name, err)
	}
	if err := json.Unmarshal([]byte(facts), &n.Facts); err != nil {
		return n, fmt.Errorf("node %s facts: %w", n.Name, err)
	}
	if seen.Valid {
		t := parseTS(seen.String)
		n.LastSeen = &t
	}
	n.EnrolledAt = parseTS(enrolled)
	if n.Apps == nil {
		n.Apps = []api.NodeApp{}
	}
	n.Assigned = []api.Assignment{}
	return n, nil
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

const assignmentQuery = `SELECT a.node, a.app, a.version, r.blob, r.size, r.signature, coalesce(r.withdrawn, ''), a.channel, a.stopped != 0, a.restarts, a.rollout, a.attempt, a.min_healthy_ns, a.healthy_deadline_ns
	FROM assignments a JOIN releases r ON r.app = a.app AND r.version = a.version`

// assignments reads assignments by node name.
func assignments(ctx context.Context, q querier, where string, args ...any) (map[string][]api.Assignment, error) {
	rows, err := q.QueryContext(ctx, assignmentQuery+where+` ORDER BY a.node, a.app`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return ScanAssignments(rows)
}

// assignedOf fills one node's assignments.
func assignedOf(ctx context.Context, q querier, n *api.Node) error {
	m, err := assignments(ctx, q, ` WHERE a.node = ?`, n.Name)
	if err != nil {
		return err
	}
	if a := m[n.Name]; a != nil {
		n.Assigned = a
	}
	return nil
}

// Nodes lists every node by name, revoked ones included.
func (s *SQLite) Nodes(ctx context.Context) ([]api.Node, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes n JOIN sites s ON s.name = n.site ORDER BY n.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	all, err := assignments(ctx, s.r, "")
	if err != nil {
		return nil, err
	}
	for i := range out {
		if a := all[out[i].Name]; a != nil {
			out[i].Assigned = a
		}
	}
	return out, nil
}

// Node returns one node.
func (s *SQLite) Node(ctx context.Context, name string) (api.Node, error) {
	n, err := scanNode(s.r.QueryRowContext(ctx, `SELECT `+nodeCols+` FROM nodes n JOIN sites s ON s.name = n.site WHERE n.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("node %q %w", name, ErrNotFound)
	}
	if err != nil {
		return n, err
	}
	return n, assignedOf(ctx, s.r, &n)
}

// NodesNamed reads the named nodes that exist, with their assignments.
func (s *SQLite) NodesNamed(ctx context.Context, names []string) (map[string]api.Node, error) {
	if len(names) == 0 {
		return map[string]api.Node{}, nil
	}
	nodes, err := nodesNamed(ctx, s.r, names)
	if err != nil {
		return nil, err
	}
	all, err := assignments(ctx, s.r, ` WHERE a.node IN (SELECT value FROM json_each(?))`, mustJSON(names))
	if err != nil {
		return nil, err
	}
	for name, a := range all {
		if n, ok := nodes[name]; ok {
			n.Assigned = a
			nodes[name] = n
		}
	}
	return nodes, nil
}

// NodeStates reads the status and app report of the named nodes (of all when names is nil).
func (s *SQLite) NodeStates(ctx context.Context, names []string) (map[string]NodeState, error) {
	query, args := `SELECT name, status, apps FROM nodes`, []any{}
	if names != nil {
		query, args = query+` WHERE name IN (SELECT value FROM json_each(?))`, []any{mustJSON(names)}
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]NodeState{}
	for rows.Next() {
		var name, apps string
		var st NodeState
		if err := rows.Scan(&name, &st.Status, &apps); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(apps), &st.Apps); err != nil {
			return nil, fmt.Errorf("node %s apps: %w", name, err)
		}
		out[name] = st
	}
	return out, rows.Err()
}

// nodesNamed reads the named nodes that exist, in one query; their assignments are not filled.
func nodesNamed(ctx context.Context, q querier, names []string) (map[string]api.Node, error) {
	return nodesWhere(ctx, q, ` WHERE n.name IN (SELECT value FROM json_each(?))`, mustJSON(names))
}

// nodesWhere reads the nodes a condition selects, in one query, without their assignments.
func nodesWhere(ctx context.Context, q querier, where string, args ...any) (map[string]api.Node, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+nodeCols+` FROM nodes n JOIN sites s ON s.name = n.site`+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]api.Node{}
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out[n.Name] = n
	}
	return out, rows.Err()
}

// appendEvents writes evs, in order, with the actor of ctx, in one statement, and returns them
// as stored. Their ids are consecutive: one statement in the one write transaction allocates
// them in the order the rows are inserted.
func appendEvents(ctx context.Context, insert *sql.Stmt, evs []api.Event) ([]api.Event, error) {
	if len(evs) == 0 {
		return evs, nil
	}
	rows := make([][]any, len(evs))
	for i := range evs {
		evs[i] = withActor(ctx, evs[i])
		evs[i].Time = evs[i].Time.UTC()
		rows[i] = insertEventArgs(evs[i])
	}
	res, err := insert.ExecContext(ctx, mustJSON(rows))
	if err != nil {
		return nil, err
	}
	last, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	for i := range evs {
		evs[i].ID = last - int64(len(evs)-1-i)
	}
	return evs, nil
}

// SetFacts replaces a node's facts.
func (s *SQLite) SetFacts(ctx context.Context, name string, f api.Facts) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET facts = ? WHERE name = ?`, mustJSON(f), name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("node %q %w", name, ErrNotFound)
		}
		return nil
	})
}

// TouchNodes records last-seen times.
func (s *SQLite) TouchNodes(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	// One statement for the whole batch: a fleet's flush is one write, not one per node.
	times := make(map[string]string, len(seen))
	for name, t := range seen {
		times[name] = ts(t)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE nodes SET last_seen = j.value FROM json_each(?) AS j WHERE nodes.name = j.key`, mustJSON(times))
		return err
	})
}

// LastEventID returns the id of the newest event.
func (s *SQLite) LastEventID(ctx context.Context) (int64, error) {
	var id int64
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&id)
	return id, err
}

// Events reads the log after since.
func (s *SQLite) Events(ctx context.Context, since int64, limit int) ([]api.Event, error) {
	if evs, ok := s.tail.after(since, limit); ok {
		return evs, nil
	}
	return s.logEvents(ctx, since, limit)
}

// logEvents reads the log after since from the database.
func (s *SQLite) logEvents(ctx context.Context, since int64, limit int) ([]api.Event, error) {
	return s.queryEvents(ctx, `SELECT id, time, type, subject, data, actor, role, source FROM events WHERE id > ? ORDER BY id LIMIT ?`, since, limit)
}

// SubjectEvents reads the newest events about subject, through events_subject.
func (s *SQLite) SubjectEvents(ctx context.Context, subject string, limit int) ([]api.Event, error) {
	return s.queryEvents(ctx, `SELECT id, time, type, subject, data, actor, role, source FROM events WHERE subject = ? ORDER BY id DESC LIMIT ?`, subject, limit)
}

// queryEvents runs a query of the events' columns and returns the events.
func (s *SQLite) queryEvents(ctx context.Context, query string, args ...any) ([]api.Event, error) {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Event
	for rows.Next() {
		var e api.Event
		var t, data string
		if err := rows.Scan(&e.ID, &t, &e.Type, &e.Subject, &data, &e.Actor, &e.Role, &e.Source); err != nil {
			return nil, err
		}
		e.Time = parseTS(t)
		if data != "{}" {
			e.Data = json.RawMessage(data)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
