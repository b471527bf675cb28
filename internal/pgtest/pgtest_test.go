package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

var pg = New()

func TestMain(m *testing.M) { os.Exit(pg.Main(m)) }

// Each test gets a database of its own, empty and writable, gone when the test ends.
func TestDB(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := 0; i < 2; i++ {
		conn, err := pgx.Connect(ctx, pg.DB(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var name string
		var tables int
		if err := conn.QueryRow(ctx, `SELECT current_database(),
			(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("database %s has %d tables, want none", name, tables)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE t (id int)`); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Fatalf("two tests share database %s", names[0])
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5433/postgres?sslmode=disable": "postgres://u:p@h:5433/db1?sslmode=disable",
		"postgresql://h/":             "postgresql://h/db1",
		"host=/run/postgresql user=u": "host=/run/postgresql user=u dbname=db1",
	} {
		if got := withDatabase(in, "db1"); got != want {
			t.Errorf("withDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

// A program that is not a test starts a cluster of its own, with its settings over pgtest's,
// takes a database, drops it and stops the cluster.
func TestStart(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skip(EnvURL + " is set: this test would start a cluster of its own")
	}
	c, err := Start(Options{Settings: []string{"fsync=on"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	if c.PID() == 0 {
		t.Fatal("a cluster of its own has no server process id")
	}
	url, drop, err := c.NewDB()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var fsync string
	err = conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync)
	conn.Close(ctx)
	if err != nil || fsync != "on" {
		t.Fatalf("fsync = %q (%v), want on: the caller's settings come after pgtest's", fsync, err)
	}
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("the dropped database still takes connections")
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}
