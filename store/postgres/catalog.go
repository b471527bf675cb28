package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
	"github.com/jackc/pgx/v5"
)

// This file holds the catalog, signing keys, releases and channels: their reads, and Update,
// the one transaction in which the services write them (and assignments and app reports) through
// store.Tx. Lists that SQLite sorts by text are sorted with COLLATE "C", its byte order, whatever
// the database's collation.

var _ store.Updater = (*Store)(nil)

// Update runs fn in one transaction that takes the events lock before anything else: Update
// transactions run one at a time across all replicas, what fn reads stays true until it commits,
// and the events it appends get ids in commit order. It commits when fn returns nil; otherwise
// it rolls back and returns fn's error as it is.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.write(ctx, func(tx writeTx) error { return fn(updateTx{ctx: ctx, tx: tx}) })
}

// updateTx is the store.Tx of one Update; its methods run in Update's context. It is not safe
// for concurrent use. What a method reports as ErrNotFound or ErrExists it finds without a failed
// statement, which on PostgreSQL would abort the transaction: fn may go on after such an error,
// as it can on SQLite.
type updateTx struct {
	ctx context.Context
	tx  writeTx
}

var _ store.Tx = updateTx{}

// rowQuerier is what the pool and a transaction share for single-row reads.
type rowQuerier interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

const keyCols = `id, public_key, comment, created_at, revoked_at`

func scanKey(row pgx.Row) (api.SigningKey, error) {
	var k api.SigningKey
	if err := row.Scan(&k.ID, &k.PublicKey, &k.Comment, &k.CreatedAt, &k.RevokedAt); err != nil {
		return k, err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RevokedAt != nil {
		*k.RevokedAt = k.RevokedAt.UTC()
	}
	return k, nil
}

// Key returns the key whose id is id or, when none is, whose public key is publicKey.
func (u updateTx) Key(id, publicKey string) (api.SigningKey, error) {
	k, err := scanKey(u.tx.QueryRow(u.ctx, `SELECT `+keyCols+` FROM signing_keys
		WHERE id = $1 OR public_key = $2 ORDER BY id = $1 DESC LIMIT 1`, id, publicKey))
	switch {
	case errors.Is(err, pgx.ErrNoRows) && id == "":
		return k, fmt.Errorf("key with public key %s %w", publicKey, store.ErrNotFound)
	case errors.Is(err, pgx.ErrNoRows):
		return k, fmt.Errorf("key %q %w", id, store.ErrNotFound)
	}
	return k, err
}

// InsertKey records k as it is, RevokedAt included; a key with its id or public key is
// ErrExists.
func (u updateTx) InsertKey(k api.SigningKey) error {
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO signing_keys (id, public_key, comment, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, k.ID, k.PublicKey, k.Comment, pgTime(k.CreatedAt), pgTimePtr(k.RevokedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("key %q %w", k.ID, store.ErrExists)
	}
	return nil
}

// RevokeKey marks a key that is not revoked revoked at at.
func (u updateTx) RevokeKey(id string, at time.Time) (bool, error) {
	tag, err := u.tx.Exec(u.ctx, `UPDATE signing_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, id, pgTime(at))
	return tag.RowsAffected() == 1, err
}

// Keys lists signing keys, revoked ones included, oldest first.
func (s *Store) Keys(ctx context.Context) ([]api.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY created_at, id COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.SigningKey, error) { return scanKey(r) })
}

// releaseQuery reads releases with their channels in promotion order.
const releaseQuery = `SELECT r.app, r.version, r.class, r.blob, r.size, r.signed_by, r.signature, r.manifest, r.created_at,
	coalesce(r.withdrawn, ''), array(SELECT cr.channel FROM channel_releases cr JOIN channels c ON c.name = cr.channel
		WHERE cr.app = r.app AND cr.version = r.version ORDER BY c.position)
	FROM releases r`

func scanRelease(row pgx.Row) (api.Release, error) {
	var r api.Release
	if err := row.Scan(&r.App, &r.Version, &r.Class, &r.SHA256, &r.Size, &r.SignedBy, &r.Signature, &r.Manifest, &r.CreatedAt,
		&r.Withdrawn, &r.Channels); err != nil {
		return r, err
	}
	r.CreatedAt = r.CreatedAt.UTC()
	if r.Channels == nil {
		r.Channels = []string{}
	}
	return r, nil
}

// release reads one release through q.
func release(ctx context.Context, q rowQuerier, app, version string) (api.Release, error) {
	r, err := scanRelease(q.QueryRow(ctx, releaseQuery+` WHERE r.app = $1 AND r.version = $2`, app, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("release %s@%s %w", app, version, store.ErrNotFound)
	}
	return r, err
}

// Release returns one release with its channels in promotion order.
func (s *Store) Release(ctx context.Context, app, version string) (api.Release, error) {
	return release(ctx, s.pool, app, version)
}

// Releases lists releases by app, then push time, of one app when app is not empty.
func (s *Store) Releases(ctx context.Context, app string) ([]api.Release, error) {
	rows, err := s.pool.Query(ctx, releaseQuery+` WHERE $1 = '' OR r.app = $1
		ORDER BY r.app COLLATE "C", r.created_at, r.version COLLATE "C"`, app)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Release, error) { return scanRelease(r) })
}

// ReferencedBlobs returns the blobs that releases refer to.
func (s *Store) ReferencedBlobs(ctx context.Context) (map[string]bool, error) {
	sums, err := queryStrings(ctx, s.pool, `SELECT DISTINCT blob FROM releases`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sums))
	for _, b := range sums {
		out[b] = true
	}
	return out, nil
}

// Release returns a release with its channels in promotion order.
func (u updateTx) Release(app, version string) (api.Release, error) {
	return release(u.ctx, u.tx, app, version)
}

// InsertRelease records r, neither withdrawn nor in any channel; the same APP@VERSION again is
// ErrExists.
func (u updateTx) InsertRelease(r api.Release) error {
	manifest, err := json.Marshal(r.Manifest)
	if err != nil {
		return fmt.Errorf("manifest of %s@%s: %w", r.App, r.Version, err)
	}
	tag, err := u.tx.Exec(u.ctx, `INSERT INTO releases (app, version, class, blob, size, signed_by, signature, manifest, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (app, version) DO NOTHING`,
		r.App, r.Version, r.Class, r.SHA256, r.Size, r.SignedBy, r.Signature, json.RawMessage(manifest), pgTime(r.CreatedAt))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("release %s@%s %w", r.App, r.Version, store.ErrExists)
	}
	return nil
}

// lockNodes is a query of the names of the nodes that are not revoked among those nameQuery (a
// query of one column) returns, locked for update in byte order: the order TouchNodes locks them
// in, so that the two cannot deadlock.
func lockNodes(nameQuery string) string {
	return `SELECT name FROM nodes WHERE name IN (` + nameQuery + `) AND status != 'revoked'
		ORDER BY name COLLATE "C" FOR NO KEY UPDATE`
}

// WithdrawRelease records a release withdrawn, takes it out of its channels with a history
// entry in each, and gives the nodes assigned it that are not revoked a new generation; one
// round trip.
func (u updateTx) WithdrawRelease(app, version, reason string, at time.Time) (channels, nodes []string, err error) {
	var b pgx.Batch
	b.Queue(`UPDATE releases SET withdrawn = $3 WHERE app = $1 AND version = $2`, app, version, reason)
	// A release that is not there is in no channel and assigned to no node (the foreign keys
	// say so): the statements below change nothing then.
	b.Queue(`WITH gone AS (DELETE FROM channel_releases WHERE app = $1 AND version = $2 RETURNING channel),
		history AS (INSERT INTO channel_history (channel, app, version, action, reason, at)
			SELECT channel, $1, $2, 'withdrawn', $3, $4 FROM gone ORDER BY channel COLLATE "C")
		SELECT channel FROM gone ORDER BY channel COLLATE "C"`, app, version, reason, pgTime(at))
	b.Queue(`WITH locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM assignments WHERE app = $1 AND version = $2`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT name FROM bumped ORDER BY name COLLATE "C"`, app, version)
	res := u.tx.SendBatch(u.ctx, &b)
	defer func() {
		if cerr := res.Close(); err == nil && cerr != nil {
			channels, nodes, err = nil, nil, cerr
		}
	}()
	tag, err := res.Exec()
	if err != nil {
		return nil, nil, err
	}
	if channels, err = collectStrings(res.Query()); err != nil {
		return nil, nil, err
	}
	if nodes, err = collectStrings(res.Query()); err != nil {
		return nil, nil, err
	}
	if tag.RowsAffected() == 0 {
		return nil, nil, fmt.Errorf("release %s@%s %w", app, version, store.ErrNotFound)
	}
	return channels, nodes, nil
}

// collectStrings reads the rows of one text column that a batch returns.
func collectStrings(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// channels lists the channels in promotion order, without their releases.
func channels(ctx context.Context, q querier) ([]api.Channel, error) {
	rows, err := q.Query(ctx, `SELECT name, position, allow_unsigned FROM channels ORDER BY position`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (api.Channel, error) {
		var c api.Channel
		err := r.Scan(&c.Name, &c.Position, &c.AllowUnsigned)
		return c, err
	})
}

// Channels lists channels in promotion order with their releases (by app, then the time each
// entered) and, when withHistory, their history, all as of one moment.
func (s *Store) Channels(ctx context.Context, withHistory bool) ([]api.Channel, error) {
	var out []api.Channel
	read := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, s.pool, read, func(tx pgx.Tx) error {
		var err error
		if out, err = channels(ctx, tx); err != nil {
			return err
		}
		idx := make(map[string]int, len(out))
		for i := range out {
			out[i].Releases, out[i].Candidates = []string{}, map[string]string{}
			idx[out[i].Name] = i
		}
		rows, err := tx.Query(ctx, `SELECT channel, app || '@' || version FROM channel_releases
			ORDER BY app COLLATE "C", added_at, version COLLATE "C"`)
		if err != nil {
			return err
		}
		var ch, rel string
		if _, err := pgx.ForEachRow(rows, []any{&ch, &rel}, func() error {
			if i, ok := idx[ch]; ok {
				out[i].Releases = append(out[i].Releases, rel)
			}
			return nil
		}); err != nil || !withHistory {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT channel, app || '@' || version, action, reason, at FROM channel_history ORDER BY id`)
		if err != nil {
			return err
		}
		var c api.ChannelChange
		_, err = pgx.ForEachRow(rows, []any{&ch, &c.Release, &c.Action, &c.Reason, &c.Time}, func() error {
			if i, ok := idx[ch]; ok {
				c.Time = c.Time.UTC()
				out[i].History = append(out[i].History, c)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Channels lists the channels in promotion order; their Releases, Candidates and History are
// nil.
func (u updateTx) Channels() ([]api.Channel, error) { return channels(u.ctx, u.tx) }

// InsertChannel puts a new channel right after the channel named after, moving the ones behind
// it one step back. An unknown after is ErrNotFound, a name taken ErrExists.
func (u updateTx) InsertChannel(name, after string, allowUnsigned bool, at time.Time) error {
	var pos *int
	var taken bool
	if err := u.tx.QueryRow(u.ctx, `SELECT (SELECT position FROM channels WHERE name = $1),
		EXISTS (SELECT 1 FROM channels WHERE name = $2)`, after, name).Scan(&pos, &taken); err != nil {
		return err
	}
	if pos == nil {
		return fmt.Errorf("channel %q %w", after, store.ErrNotFound)
	}
	if taken {
		return fmt.Errorf("channel %q %w", name, store.ErrExists)
	}
	var b pgx.Batch
	// Two steps, so the unique positions never collide mid-update: PostgreSQL checks them row
	// by row.
	b.Queue(`UPDATE channels SET position = -(position + 1) WHERE position > $1`, *pos)
	b.Queue(`UPDATE channels SET position = -position WHERE position < 0`)
	b.Queue(`INSERT INTO channels (name, position, allow_unsigned, created_at) VALUES ($1, $2, $3, $4)`,
		name, *pos+1, allowUnsigned, pgTime(at))
	return u.tx.SendBatch(u.ctx, &b).Close()
}

// SetAllowUnsigned sets whether a channel accepts unsigned releases; an unknown channel is
// ErrNotFound.
func (u updateTx) SetAllowUnsigned(channel string, allow bool) error {
	tag, err := u.tx.Exec(u.ctx, `UPDATE channels SET allow_unsigned = $2 WHERE name = $1`, channel, allow)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("channel %q %w", channel, store.ErrNotFound)
	}
	return nil
}

// Unsigned lists, as APP@VERSION in byte order, the unsigned releases in a channel; none for a
// channel that does not exist.
func (u updateTx) Unsigned(channel string) ([]string, error) {
	return queryStrings(u.ctx, u.tx, `SELECT cr.app || '@' || cr.version FROM channel_releases cr
		JOIN releases r ON r.app = cr.app AND r.version = cr.version
		WHERE cr.channel = $1 AND r.signed_by = '' ORDER BY (cr.app || '@' || cr.version) COLLATE "C"`, channel)
}

// AddToChannel puts a release in a channel with a history entry, in one statement. An unknown
// channel or release is ErrNotFound; a release already in the channel is ErrExists.
func (u updateTx) AddToChannel(channel, app, version, action, reason string, at time.Time) error {
	var haveChannel, haveRelease, added bool
	if err := u.tx.QueryRow(u.ctx, `WITH c AS (SELECT name FROM channels WHERE name = $1),
		r AS (SELECT app, version FROM releases WHERE app = $2 AND version = $3),
		added AS (INSERT INTO channel_releases (channel, app, version, added_at)
			SELECT c.name, r.app, r.version, $4 FROM c, r ON CONFLICT DO NOTHING RETURNING channel),
		history AS (INSERT INTO channel_history (channel, app, version, action, reason, at)
			SELECT channel, $2, $3, $5, $6, $4 FROM added)
		SELECT EXISTS (SELECT FROM c), EXISTS (SELECT FROM r), EXISTS (SELECT FROM added)`,
		channel, app, version, pgTime(at), action, reason).Scan(&haveChannel, &haveRelease, &added); err != nil {
		return err
	}
	switch {
	case !haveChannel:
		return fmt.Errorf("channel %q %w", channel, store.ErrNotFound)
	case !haveRelease:
		return fmt.Errorf("release %s@%s %w", app, version, store.ErrNotFound)
	case !added:
		return fmt.Errorf("%s@%s is already in %s: %w", app, version, channel, store.ErrExists)
	}
	return nil
}

// AssignNodes assigns app@version to the named nodes that are not revoked and bumps the
// generation of those whose assignment changed, in one statement however many names there are;
// it returns those nodes by name. An unknown release is ErrNotFound.
func (u updateTx) AssignNodes(names []string, app, version, channel string, at time.Time) ([]string, error) {
	var haveRelease bool
	var changed []string
	// The upsert changes a row only when the version or the channel differs, so a repeated
	// assignment changes nothing and wakes no agent.
	if err := u.tx.QueryRow(u.ctx, `WITH r AS (SELECT app, version FROM releases WHERE app = $2 AND version = $3),
		assigned AS (INSERT INTO assignments (node, app, version, channel, assigned_at)
			SELECT n.name, r.app, r.version, $5, $4 FROM nodes n, r WHERE n.name = ANY($1) AND n.status != 'revoked'
			ON CONFLICT (node, app) DO UPDATE SET version = excluded.version, channel = excluded.channel, assigned_at = excluded.assigned_at,
				rollout = 0, min_healthy_ns = 0, healthy_deadline_ns = 0
				WHERE assignments.version != excluded.version OR assignments.channel != excluded.channel
			RETURNING node),
		locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM assigned`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT EXISTS (SELECT FROM r), array(SELECT name FROM bumped ORDER BY name COLLATE "C")`,
		names, app, version, pgTime(at), channel).Scan(&haveRelease, &changed); err != nil {
		return nil, err
	}
	if !haveRelease {
		return nil, fmt.Errorf("release %s@%s %w", app, version, store.ErrNotFound)
	}
	if len(changed) == 0 {
		return nil, nil
	}
	return changed, nil
}

// UnassignNodes drops the named nodes' assignment of app and bumps their generations, in one
// statement.
func (u updateTx) UnassignNodes(names []string, app string) ([]string, error) {
	var changed []string
	err := u.tx.QueryRow(u.ctx, `WITH dropped AS (DELETE FROM assignments WHERE app = $2 AND node = ANY($1) RETURNING node),
		locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM dropped`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT array(SELECT name FROM bumped ORDER BY name COLLATE "C")`, names, app).Scan(&changed)
	if err != nil || len(changed) == 0 {
		return nil, err
	}
	return changed, nil
}

// ControlApp records an operator's action on the named nodes' app and bumps the generations of
// the nodes it changed, in one statement.
func (u updateTx) ControlApp(names []string, app, action string) ([]string, error) {
	var set string
	switch action {
	case api.AppStop:
		set = `stopped = true WHERE NOT stopped AND`
	case api.AppStart:
		set = `stopped = false WHERE stopped AND`
	case api.AppRestart:
		set = `restarts = restarts + 1 WHERE`
	default:
		return nil, fmt.Errorf("app action %q: %w", action, store.ErrNotFound)
	}
	var changed []string
	err := u.tx.QueryRow(u.ctx, `WITH done AS (UPDATE assignments SET `+set+` app = $2 AND node = ANY($1) RETURNING node),
		locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM done`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT array(SELECT name FROM bumped ORDER BY name COLLATE "C")`, names, app).Scan(&changed)
	if err != nil || len(changed) == 0 {
		return nil, err
	}
	return changed, nil
}

// ChannelVersions lists the versions of app in channel.
func (u updateTx) ChannelVersions(channel, app string) ([]string, error) {
	var out []string
	err := u.tx.QueryRow(u.ctx, `SELECT array(SELECT version FROM channel_releases WHERE channel = $1 AND app = $2)`, channel, app).Scan(&out)
	return out, err
}

// MoveFollowers gives the nodes that follow channel for app version, and new generations, in
// one statement.
func (u updateTx) MoveFollowers(app, channel, version string, at time.Time) ([]string, error) {
	var changed []string
	err := u.tx.QueryRow(u.ctx, `WITH moved AS (UPDATE assignments SET version = $3, assigned_at = $4
			WHERE app = $1 AND channel = $2 AND channel != '' AND version != $3 RETURNING node),
		locked AS MATERIALIZED (`+lockNodes(`SELECT node FROM moved`)+`),
		bumped AS (UPDATE nodes SET generation = generation + 1 FROM locked WHERE nodes.name = locked.name RETURNING nodes.name)
		SELECT array(SELECT name FROM bumped ORDER BY name COLLATE "C")`, app, channel, version, pgTime(at)).Scan(&changed)
	if err != nil || len(changed) == 0 {
		return nil, err
	}
	return changed, nil
}

// NodeApps returns the apps a node that is not revoked last reported.
func (u updateTx) NodeApps(node string) ([]api.NodeApp, error) {
	var apps []api.NodeApp
	err := u.tx.QueryRow(u.ctx, `SELECT apps FROM nodes WHERE name = $1 AND status != 'revoked'`, node).Scan(&apps)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("node %q %w", node, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	for i := range apps {
		if t := apps[i].InstalledAt; t != nil {
			*t = t.UTC()
		}
	}
	if apps == nil {
		apps = []api.NodeApp{}
	}
	return apps, nil
}

// SetNodeApps replaces the apps of a node that is not revoked; ErrNotFound for any other.
func (u updateTx) SetNodeApps(node string, apps []api.NodeApp) error {
	if apps == nil {
		apps = []api.NodeApp{}
	}
	tag, err := u.tx.Exec(u.ctx, `UPDATE nodes SET apps = $2 WHERE name = $1 AND status != 'revoked'`, node, apps)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("node %q %w", node, store.ErrNotFound)
	}
	return nil
}

// AppendEvents writes evs in one statement, in order, each with the actor of Update's context,
// and returns copies of them as stored.
func (u updateTx) AppendEventsAs(a store.Actor, evs ...api.Event) ([]api.Event, error) {
	return updateTx{ctx: store.WithActor(u.ctx, a), tx: u.tx}.AppendEvents(evs...)
}

func (u updateTx) AppendEvents(evs ...api.Event) ([]api.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	// One array per column, unnested in the statement.
	n := len(evs)
	out, times := make([]api.Event, n), make([]time.Time, n)
	types, subjects, data := make([]string, n), make([]string, n), make([]string, n)
	actors, roles, sources := make([]string, n), make([]string, n), make([]string, n)
	for i, e := range evs {
		e = withActor(u.ctx, e)
		e.Time = pgTime(e.Time)
		out[i] = e
		times[i], types[i], subjects[i], data[i] = e.Time, e.Type, e.Subject, string(e.Data)
		if data[i] == "" {
			data[i] = "{}" // as appendEvent writes it, and Events reads it back as no data
		}
		actors[i], roles[i], sources[i] = e.Actor, e.Role, e.Source
	}
	rows, err := u.tx.Query(u.ctx, `INSERT INTO events (time, type, subject, data, actor, role, source)
		SELECT e.at, e.typ, e.subject, e.data::json, e.actor, e.role, e.source
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
			WITH ORDINALITY AS e (at, typ, subject, data, actor, role, source, n)
		ORDER BY e.n
		RETURNING id`, times, types, subjects, data, actors, roles, sources)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if len(ids) != len(out) {
		return nil, fmt.Errorf("appending %d events stored %d", len(out), len(ids))
	}
	// The identity column numbers the rows in the order they are inserted, which ORDER BY
	// fixes; RETURNING promises no order, so the ids are put back in theirs.
	slices.Sort(ids)
	for i := range out {
		out[i].ID = ids[i]
	}
	return out, nil
}
