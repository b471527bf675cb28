package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
)

var _ Updater = (*SQLite)(nil)

// Update runs fn in one write transaction. SQLite has one writer, so transactions of Update
// run one at a time.
func (s *SQLite) Update(ctx context.Context, fn func(Tx) error) error {
	return s.txEvents(ctx, func(tx *sql.Tx, added *[]api.Event) error {
		return fn(sqliteTx{ctx: ctx, tx: tx, added: added, hot: &s.hot})
	})
}

// sqliteTx is a Tx over one SQLite write transaction.
type sqliteTx struct {
	ctx   context.Context
	tx    *sql.Tx
	added *[]api.Event // the events appended, for the tail once committed
	hot   *hotStatements
}

// stmt is a statement prepared on the writer's connection, within this transaction.
func (t sqliteTx) stmt(st *sql.Stmt) *sql.Stmt { return t.tx.StmtContext(t.ctx, st) }

func (t sqliteTx) exec(query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, query, args...)
}

// exists tells whether a query of one row finds it.
func (t sqliteTx) exists(query string, args ...any) (bool, error) {
	var one int
	err := t.tx.QueryRowContext(t.ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// release returns an error unless app@version exists.
func (t sqliteTx) release(app, version string) error {
	ok, err := t.exists(`SELECT 1 FROM releases WHERE app = ? AND version = ?`, app, version)
	if err == nil && !ok {
		err = fmt.Errorf("release %s@%s %w", app, version, ErrNotFound)
	}
	return err
}

func (t sqliteTx) Key(id, publicKey string) (api.SigningKey, error) {
	var k api.SigningKey
	var created string
	var revoked sql.NullString
	err := t.tx.QueryRowContext(t.ctx, `SELECT id, public_key, comment, created_at, revoked_at FROM signing_keys
		WHERE id = ? OR public_key = ? LIMIT 1`, id, publicKey).Scan(&k.ID, &k.PublicKey, &k.Comment, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("key %s %w", id, ErrNotFound)
	}
	if err != nil {
		return k, err
	}
	k.CreatedAt = parseTS(created)
	if revoked.Valid {
		at := parseTS(revoked.String)
		k.RevokedAt = &at
	}
	return k, nil
}

func (t sqliteTx) InsertKey(k api.SigningKey) error {
	if dup, err := t.exists(`SELECT 1 FROM signing_keys WHERE id = ? OR public_key = ?`, k.ID, k.PublicKey); err != nil || dup {
		if err == nil {
			err = fmt.Errorf("key %s %w", k.ID, ErrExists)
		}
		return err
	}
	var revoked any
	if k.RevokedAt != nil {
		revoked = ts(*k.RevokedAt)
	}
	_, err := t.exec(`INSERT INTO signing_keys (id, public_key, comment, created_at, revoked_at) VALUES (?, ?, ?, ?, ?)`,
		k.ID, k.PublicKey, k.Comment, ts(k.CreatedAt), revoked)
	return err
}

func (t sqliteTx) RevokeKey(id string, at time.Time) (bool, error) {
	res, err := t.exec(`UPDATE signing_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, ts(at), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t sqliteTx) Release(app, version string) (api.Release, error) {
	return releaseByName(t.ctx, t.tx, app, version)
}

func (t sqliteTx) InsertRelease(r api.Release) error {
	if err := t.release(r.App, r.Version); err == nil {
		return fmt.Errorf("release %s@%s %w", r.App, r.Version, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err := t.exec(`INSERT INTO releases (app, version, class, blob, size, signed_by, signature, manifest, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.App, r.Version, r.Class, r.SHA256, r.Size, r.SignedBy, r.Signature, mustJSON(r.Manifest), ts(r.CreatedAt))
	return err
}

func (t sqliteTx) WithdrawRelease(app, version, reason string, at time.Time) (channels, nodes []string, err error) {
	if err := t.release(app, version); err != nil {
		return nil, nil, err
	}
	if channels, err = queryStrings(t.ctx, t.tx, `SELECT channel FROM channel_releases WHERE app = ? AND version = ? ORDER BY channel`, app, version); err != nil {
		return nil, nil, err
	}
	for _, c := range channels {
		if _, err := t.exec(`INSERT INTO channel_history (channel, app, version, action, reason, at) VALUES (?, ?, ?, 'withdrawn', ?, ?)`,
			c, app, version, reason, ts(at)); err != nil {
			return nil, nil, err
		}
	}
	if _, err := t.exec(`DELETE FROM channel_releases WHERE app = ? AND version = ?`, app, version); err != nil {
		return nil, nil, err
	}
	if _, err := t.exec(`UPDATE releases SET withdrawn = ? WHERE app = ? AND version = ?`, reason, app, version); err != nil {
		return nil, nil, err
	}
	nodes, err = queryStrings(t.ctx, t.tx, `UPDATE nodes SET generation = generation + 1 WHERE status != 'revoked'
		AND name IN (SELECT node FROM assignments WHERE app = ? AND version = ?) RETURNING name`, app, version)
	return channels, nodes, err
}

func (t sqliteTx) Channels() ([]api.Channel, error) { return channelList(t.ctx, t.tx) }

func (t sqliteTx) InsertChannel(name, after string, allowUnsigned bool, at time.Time) error {
	var pos int
	err := t.tx.QueryRowContext(t.ctx, `SELECT position FROM channels WHERE name = ?`, after).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("channel %q %w", after, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if dup, err := t.exists(`SELECT 1 FROM channels WHERE name = ?`, name); err != nil || dup {
		if err == nil {
			err = fmt.Errorf("channel %q %w", name, ErrExists)
		}
		return err
	}
	// Two steps, so the unique positions never collide mid-update.
	if _, err := t.exec(`UPDATE channels SET position = -(position + 1) WHERE position > ?`, pos); err != nil {
		return err
	}
	if _, err := t.exec(`UPDATE channels SET position = -position WHERE position < 0`); err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO channels (name, position, allow_unsigned, created_at) VALUES (?, ?, ?, ?)`, name, pos+1, allowUnsigned, ts(at))
	return err
}

func (t sqliteTx) SetAllowUnsigned(channel string, allow bool) error {
	res, err := t.exec(`UPDATE channels SET allow_unsigned = ? WHERE name = ?`, allow, channel)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("channel %q %w", channel, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) Unsigned(channel string) ([]string, error) {
	return queryStrings(t.ctx, t.tx, `SELECT cr.app || '@' || cr.version FROM channel_releases cr JOIN releases r
		ON r.app = cr.app AND r.version = cr.version WHERE cr.channel = ? AND r.signed_by = '' ORDER BY 1`, channel)
}

func (t sqliteTx) AddToChannel(channel, app, version, action, reason string, at time.Time) error {
	if ok, err := t.exists(`SELECT 1 FROM channels WHERE name = ?`, channel); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("channel %q %w", channel, ErrNotFound)
		}
		return err
	}
	if err := t.release(app, version); err != nil {
		return err
	}
	if in, err := t.exists(`SELECT 1 FROM channel_releases WHERE channel = ? AND app = ? AND version = ?`, channel, app, version); err != nil || in {
		if err == nil {
			err = fmt.Errorf("%s@%s in channel %s %w", app, version, channel, ErrExists)
		}
		return err
	}
	if _, err := t.exec(`INSERT INTO channel_releases (channel, app, version, added_at) VALUES (?, ?, ?, ?)`, channel, app, version, ts(at)); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO channel_history (channel, app, version, action, reason, at) VALUES (?, ?, ?, ?, ?, ?)`, channel, app, version, action, reason, ts(at))
	return err
}

// AssignNodes upserts every assignment in one statement, which changes a row only when the
// version differs, so a repeated deploy changes nothing; one more statement bumps the
// generations of the nodes it changed.
func (t sqliteTx) AssignNodes(names []string, app, version, channel string, at time.Time) ([]string, error) {
	if err := t.release(app, version); err != nil {
		return nil, err
	}
	changed, err := queryStrings(t.ctx, t.tx, `INSERT INTO assignments (node, app, version, channel, assigned_at)
		SELECT name, ?, ?, ?, ? FROM nodes WHERE name IN (SELECT value FROM json_each(?)) AND status != 'revoked'
		ON CONFLICT (node, app) DO UPDATE SET version = excluded.version, channel = excluded.channel, assigned_at = excluded.assigned_at,
			rollout = 0, min_healthy_ns = 0, healthy_deadline_ns = 0
		WHERE assignments.version != excluded.version OR assignments.channel != excluded.channel
		RETURNING node`, app, version, channel, ts(at), mustJSON(names))
	if err != nil {
		return nil, err
	}
	return changed, t.bump(changed)
}

// bump gives the named nodes new generations.
func (t sqliteTx) bump(names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := t.exec(`UPDATE nodes SET generation = generation + 1 WHERE name IN (SELECT value FROM json_each(?))`, mustJSON(names))
	return err
}

func (t sqliteTx) UnassignNodes(names []string, app string) ([]string, error) {
	changed, err := queryStrings(t.ctx, t.tx, `DELETE FROM assignments WHERE app = ? AND node IN (SELECT value FROM json_each(?)) RETURNING node`,
		app, mustJSON(names))
	if err != nil {
		return nil, err
	}
	return changed, t.bump(changed)
}

func (t sqliteTx) ControlApp(names []string, app, action string) ([]string, error) {
	var set string
	switch action {
	case api.AppStop:
		set = `stopped = 1 WHERE stopped = 0 AND`
	case api.AppStart:
		set = `stopped = 0 WHERE stopped != 0 AND`
	case api.AppRestart:
		set = `restarts = restarts + 1 WHERE`
	default:
		return nil, fmt.Errorf("app action %q: %w", action, ErrNotFound)
	}
	changed, err := queryStrings(t.ctx, t.tx, `UPDATE assignments SET `+set+` app = ? AND node IN (SELECT value FROM json_each(?)) RETURNING node`,
		app, mustJSON(names))
	if err != nil {
		return nil, err
	}
	return changed, t.bump(changed)
}

func (t sqliteTx) ChannelVersions(channel, app string) ([]string, error) {
	return queryStrings(t.ctx, t.tx, `SELECT version FROM channel_releases WHERE channel = ? AND app = ?`, channel, app)
}

func (t sqliteTx) MoveFollowers(app, channel, version string, at time.Time) ([]string, error) {
	changed, err := queryStrings(t.ctx, t.tx, `UPDATE assignments SET version = ?, assigned_at = ?
		WHERE app = ? AND channel = ? AND channel != '' AND version != ? RETURNING node`, version, ts(at), app, channel, version)
	if err != nil {
		return nil, err
	}
	return changed, t.bump(changed)
}

func (t sqliteTx) NodeApps(node string) ([]api.NodeApp, error) {
	var raw string
	err := t.stmt(t.hot.nodeApps).QueryRowContext(t.ctx, node).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("node %q %w", node, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	apps := []api.NodeApp{}
	if err := json.Unmarshal([]byte(raw), &apps); err != nil {
		return nil, fmt.Errorf("node %s apps: %w", node, err)
	}
	return apps, nil
}

func (t sqliteTx) SetNodeApps(node string, apps []api.NodeApp) error {
	if apps == nil {
		apps = []api.NodeApp{}
	}
	res, err := t.stmt(t.hot.setNodeApps).ExecContext(t.ctx, mustJSON(apps), node)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("node %q %w", node, ErrNotFound)
	}
	return nil
}

func (t sqliteTx) AppendEvents(evs ...api.Event) ([]api.Event, error) {
	return t.appendEvents(t.ctx, evs)
}

func (t sqliteTx) AppendEventsAs(a Actor, evs ...api.Event) ([]api.Event, error) {
	return t.appendEvents(WithActor(t.ctx, a), evs)
}

func (t sqliteTx) appendEvents(ctx context.Context, evs []api.Event) ([]api.Event, error) {
	evs, err := appendEvents(ctx, t.stmt(t.hot.insertEvents), evs)
	if err == nil && t.added != nil {
		*t.added = append(*t.added, evs...)
	}
	return evs, err
}

// The reads of the catalog.

// Keys lists signing keys, revoked ones included, oldest first.
func (s *SQLite) Keys(ctx context.Context) ([]api.SigningKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, public_key, comment, created_at, revoked_at FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []api.SigningKey{}
	for rows.Next() {
		var k api.SigningKey
		var created string
		var revoked sql.NullString
		if err := rows.Scan(&k.ID, &k.PublicKey, &k.Comment, &created, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt = parseTS(created)
		if revoked.Valid {
			t := parseTS(revoked.String)
			k.RevokedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

const releaseCols = `r.app, r.version, r.class, r.blob, r.size, r.signed_by, r.signature, r.manifest, r.created_at, coalesce(r.withdrawn, ''),
	coalesce((SELECT group_concat(channel, ',') FROM (SELECT c.name AS channel FROM channel_releases cr JOIN channels c ON c.name = cr.channel
		WHERE cr.app = r.app AND cr.version = r.version ORDER BY c.position)), '')`

func scanRelease(sc interface{ Scan(...any) error }) (api.Release, error) {
	var r api.Release
	var manifest, created, channels string
	if err := sc.Scan(&r.App, &r.Version, &r.Class, &r.SHA256, &r.Size, &r.SignedBy, &r.Signature, &manifest, &created, &r.Withdrawn, &channels); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(manifest), &r.Manifest); err != nil {
		return r, err
	}
	r.CreatedAt = parseTS(created)
	r.Channels = []string{}
	if channels != "" {
		r.Channels = strings.Split(channels, ",")
	}
	return r, nil
}

type rowQuerier interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func releaseByName(ctx context.Context, q rowQuerier, app, version string) (api.Release, error) {
	r, err := scanRelease(q.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases r WHERE r.app = ? AND r.version = ?`, app, version))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("release %s@%s %w", app, version, ErrNotFound)
	}
	return r, err
}

// Release returns one release.
func (s *SQLite) Release(ctx context.Context, app, version string) (api.Release, error) {
	return releaseByName(ctx, s.r, app, version)
}

// Releases lists releases by app, then push time.
func (s *SQLite) Releases(ctx context.Context, app string) ([]api.Release, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+releaseCols+` FROM releases r WHERE ? = '' OR r.app = ? ORDER BY r.app, r.created_at, r.version`, app, app)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []api.Release{}
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// channelList lists channels in order, without releases.
func channelList(ctx context.Context, q querier) ([]api.Channel, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, position, allow_unsigned FROM channels ORDER BY position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []api.Channel
	for rows.Next() {
		c := api.Channel{Releases: []string{}, Candidates: map[string]string{}}
		if err := rows.Scan(&c.Name, &c.Position, &c.AllowUnsigned); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Channels lists channels in order.
func (s *SQLite) Channels(ctx context.Context, withHistory bool) ([]api.Channel, error) {
	out, err := channelList(ctx, s.r)
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	for i, c := range out {
		idx[c.Name] = i
	}
	rel, err := s.r.QueryContext(ctx, `SELECT channel, app, version FROM channel_releases ORDER BY app, added_at`)
	if err != nil {
		return nil, err
	}
	defer rel.Close()
	for rel.Next() {
		var ch, app, ver string
		if err := rel.Scan(&ch, &app, &ver); err != nil {
			return nil, err
		}
		out[idx[ch]].Releases = append(out[idx[ch]].Releases, app+"@"+ver)
	}
	if err := rel.Err(); err != nil || !withHistory {
		return out, err
	}
	hist, err := s.r.QueryContext(ctx, `SELECT channel, app, version, action, reason, at FROM channel_history ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer hist.Close()
	for hist.Next() {
		var ch, app, ver, at string
		var c api.ChannelChange
		if err := hist.Scan(&ch, &app, &ver, &c.Action, &c.Reason, &at); err != nil {
			return nil, err
		}
		c.Release, c.Time = app+"@"+ver, parseTS(at)
		if i, ok := idx[ch]; ok {
			out[i].History = append(out[i].History, c)
		}
	}
	return out, hist.Err()
}

// ReferencedBlobs returns the blobs that releases refer to.
func (s *SQLite) ReferencedBlobs(ctx context.Context) (map[string]bool, error) {
	sums, err := queryStrings(ctx, s.r, `SELECT DISTINCT blob FROM releases`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sums))
	for _, b := range sums {
		out[b] = true
	}
	return out, nil
}
