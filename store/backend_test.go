package store

import (
	"testing"
	"testing/fstest"
)

func TestReadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	got, err := ReadMigrations(fstest.MapFS{
		"m/0002_b.sql": file("B"), "m/0001_a.sql": file("A"), "m/README": file("not a script"),
	}, "m")
	if err != nil || len(got) != 2 || got[0] != "A" || got[1] != "B" {
		t.Fatalf("ReadMigrations = %q, %v", got, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":    {"m/0001_a.sql": file("A"), "m/0003_c.sql": file("C")},
		"repeat": {"m/0001_a.sql": file("A"), "m/0001_b.sql": file("B")},
		"name":   {"m/init.sql": file("A")},
	} {
		if _, err := ReadMigrations(fsys, "m"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestBroadcast(t *testing.T) {
	var b Broadcast
	w1, w2 := b.Wait(), b.Wait()
	b.Fire()
	<-w1
	<-w2
	w3 := b.Wait()
	select {
	case <-w3:
		t.Fatal("a wait that began after Fire was woken by it")
	default:
	}
	b.Fire()
	<-w3
}
