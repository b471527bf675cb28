// Package backend runs a test on every store backend, for the services' tests: their rules must
// hold whatever stores them.
//
//	func TestMain(m *testing.M) { os.Exit(backend.Main(m)) }
//
//	func TestX(t *testing.T) { backend.Each(t, func(t *testing.T, s store.Store) { ... }) }
package backend

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/internal/pgtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
)

var pg = pgtest.New()

// Main runs the package's tests and then stops the PostgreSQL cluster they started, if any.
func Main(m *testing.M) int { return pg.Main(m) }

// Each runs fn once per backend, as a subtest named after it, each time with a new, empty store
// that is closed when the subtest ends.
func Each(t *testing.T, fn func(t *testing.T, s store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// Postgres opens an empty PostgreSQL store in a database of its own (see pgtest).
func Postgres(t testing.TB) store.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), pg.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// SQLite opens an empty SQLite store in a temporary directory.
func SQLite(t testing.TB) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
