package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	s, err := store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE meta SET value = '999' WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = store.OpenSQLite(ctx, file)
	if err == nil || !strings.Contains(err.Error(), "newer than this ferry") {
		t.Fatalf("open newer schema: %v", err)
	}
	// Reopening at the current version works and keeps data.
	db, _ = sql.Open("sqlite", file)
	db.Exec(`UPDATE meta SET value = ? WHERE key = 'schema_version'`, fmt.Sprint(store.SchemaVersion()))
	db.Close()
	s, err = store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// schemaAt makes a database at schema version upTo, by the embedded migrations alone.
func schemaAt(t *testing.T, file string, upTo int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= upTo; v++ {
		names, _ := filepath.Glob(fmt.Sprintf("migrations/%04d_*.sql", v))
		if len(names) != 1 {
			t.Fatalf("migration %d: %v", v, names)
		}
		b, err := os.ReadFile(names[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("migration %d: %v", v, err)
		}
	}
	if _, err := db.Exec(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)`, fmt.Sprint(upTo)); err != nil {
		t.Fatal(err)
	}
	return db
}

// A database from before the cluster key loses the session secret it held.
func TestSQLiteSecretLeavesTheDatabase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ferry.db")
	db := schemaAt(t, file, 8)
	if _, err := db.Exec(`INSERT INTO meta (key, value) VALUES ('secret', 'c0ffee')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	openFile(t, file).Close()
	db, _ = sql.Open("sqlite", file)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM meta WHERE key = 'secret'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the database still holds the secret: %d %v", n, err)
	}
}

// Events written before the log recorded actors read as the system's.
func TestSQLiteEventActorMigration(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	db := schemaAt(t, file, 6)
	if _, err := db.Exec(`
		INSERT INTO events (time, type, subject, data) VALUES ('2026-05-01T12:00:00Z', 'site.added', 'ams', '{}')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	evs, err := s.Events(ctx, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].Actor != "system" || evs[0].Role != "" || evs[0].Source != "" {
		t.Fatalf("Events = %+v %v", evs, err)
	}
}

// A rollout from before each node's progress had a row of its own keeps every node's progress,
// now in rows, and its progress without them.
func TestSQLiteRolloutNodesMigration(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	db := schemaAt(t, file, 19)
	if _, err := db.Exec(`INSERT INTO rollouts (app, version, policy, plan, progress, state, open, created_at, created_by, updated_at)
		VALUES ('hello', '1.1.0', 'minor', '{}', '{"state":"running","wave":0,"nodes":{"n1":{"wave":0,"state":"done","moved":true},"n2":{"wave":1,"state":"pending"}}}',
		'running', 1, '2026-05-01T12:00:00Z', 'token:abc', '2026-05-01T12:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openFile(t, file)
	defer s.Close()
	r, err := s.Rollout(ctx, 1)
	if err != nil || string(r.Progress) != `{"state":"running","wave":0}` || r.Rev != 1 || len(r.Nodes) != 2 ||
		string(r.Nodes["n1"]) != `{"wave":0,"state":"done","moved":true}` || string(r.Nodes["n2"]) != `{"wave":1,"state":"pending"}` {
		t.Fatalf("Rollout = %+v (nodes %q) %v", r, r.Nodes, err)
	}
}

func openFile(t *testing.T, file string) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A spent nonce stays spent across a restart.
func TestSQLiteSpentNonceSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	now := time.Now()
	s := openFile(t, file)
	if ok, err := s.SpendNonce(ctx, "challenge-1", now.Add(time.Minute), now); err != nil || !ok {
		t.Fatalf("first spend: %v %v", ok, err)
	}
	s.Close()
	s = openFile(t, file)
	defer s.Close()
	if ok, err := s.SpendNonce(ctx, "challenge-1", now.Add(time.Minute), now.Add(time.Second)); err != nil || ok {
		t.Fatalf("spend after reopen: %v %v; want false", ok, err)
	}
	if ok, err := s.SpendNonce(ctx, "challenge-2", now.Add(time.Minute), now.Add(time.Second)); err != nil || !ok {
		t.Fatalf("another nonce after reopen: %v %v", ok, err)
	}
}

// Expired nonces are deleted, oldest first, at most store.MaxPurgedNonces per call.
func TestSQLiteSpentNoncesPurged(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	s := openFile(t, file)
	defer s.Close()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	const old = 2*store.MaxPurgedNonces + 44
	for i := 0; i < old; i++ {
		// The first ones spent expire last, so oldest first is not insertion order.
		if ok, err := s.SpendNonce(ctx, fmt.Sprintf("old%04d", i), t0.Add(time.Duration(old-i)*time.Millisecond), t0); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM spent_nonces`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != old {
		t.Fatalf("%d spent nonces recorded, want %d", n, old)
	}
	later := t0.Add(time.Hour)
	if ok, err := s.SpendNonce(ctx, "new1", later.Add(time.Minute), later); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if n := count(); n != old-store.MaxPurgedNonces+1 {
		t.Fatalf("after one purge: %d records, want %d", n, old-store.MaxPurgedNonces+1)
	}
	// The ones left are those that expire last: the first spent.
	var maxLeft string
	db.QueryRow(`SELECT max(nonce) FROM spent_nonces WHERE nonce LIKE 'old%'`).Scan(&maxLeft)
	if want := fmt.Sprintf("old%04d", old-store.MaxPurgedNonces-1); maxLeft != want {
		t.Fatalf("newest expired nonce left is %s, want %s", maxLeft, want)
	}
	// An expired record that this call does not get to purge does not count either.
	if ok, err := s.SpendNonce(ctx, "old0000", later.Add(time.Minute), later); err != nil || !ok {
		t.Fatalf("spend of an expired, unpurged nonce: %v %v; want true", ok, err)
	}
	if n := count(); n != old-2*store.MaxPurgedNonces+1 {
		t.Fatalf("after the second purge: %d records, want %d", n, old-2*store.MaxPurgedNonces+1)
	}
	if ok, err := s.SpendNonce(ctx, "old0000", later.Add(time.Minute), later); err != nil || ok {
		t.Fatalf("second spend of a revived nonce: %v %v; want false", ok, err)
	}
	if n := count(); n != 2 {
		t.Fatalf("after the third purge: %d records, want the 2 live ones", n)
	}
	// The purge uses the index on expires_at.
	var plan string
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT nonce FROM spent_nonces WHERE expires_at < 0 ORDER BY expires_at LIMIT 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, parent, unused int
		var detail string
		rows.Scan(&id, &parent, &unused, &detail)
		plan += detail + "\n"
	}
	rows.Close()
	if !strings.Contains(plan, "spent_nonces_expires") {
		t.Fatalf("purge query plan does not use the index:\n%s", plan)
	}
}

// One server per SQLite database: a second open of the same file is refused, in one line that
// says why, until the first is closed.
func TestOneServerPerDatabase(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	first, err := store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSQLite(ctx, file); err == nil || !strings.Contains(err.Error(), "in use by another ferry server") {
		t.Fatalf("second open: %v", err)
	}
	first.Close()
	again, err := store.OpenSQLite(ctx, file)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	again.Close()
}
