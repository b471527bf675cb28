package store_test

import (
	"context"
	"database/sql"
	"fmt"
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
