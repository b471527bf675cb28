package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// Events written before the log recorded actors read as the system's.
func TestSQLiteEventActorMigration(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 6; v++ {
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
	if _, err := db.Exec(`INSERT INTO meta (key, value) VALUES ('schema_version', '6');
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
