package blobstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPutIsContentAddressedAndIdempotent(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("ferry"), 10000)
	want := sha256.Sum256(data)
	sum, size, created, err := s.Put(bytes.NewReader(data))
	if err != nil || sum != hex.EncodeToString(want[:]) || size != int64(len(data)) || !created {
		t.Fatalf("Put = %s %d %v %v", sum, size, created, err)
	}
	if _, _, created, _ := s.Put(bytes.NewReader(data)); created {
		t.Fatal("the same bytes twice made a second blob")
	}
	f, err := s.Open(sum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("blob content differs")
	}
	if err := s.Remove(sum); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(sum); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed blob: %v", err)
	}
	if _, err := s.Open("../../etc/passwd"); err == nil {
		t.Fatal("Open accepted a path")
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	r.n -= len(p)
	return len(p), nil
}

func TestInterruptedPutLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	if _, _, _, err := s.Put(&failingReader{n: 1 << 20}); err == nil {
		t.Fatal("Put of a broken stream succeeded")
	}
	for _, sub := range []string{"tmp", "sha256"} {
		var files []string
		filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if len(files) != 0 {
			t.Fatalf("interrupted upload left %v", files)
		}
	}
	// A temporary file left by a killed process is cleared when it opens the store again, at
	// once; another's only when unwritten for long: written lately, it is the live upload of
	// another replica sharing the directory.
	mine := filepath.Join(dir, "tmp", "upload-a-123")
	stale, live := filepath.Join(dir, "tmp", "upload-b-123"), filepath.Join(dir, "tmp", "upload-b-456")
	for _, f := range []string{mine, stale, live} {
		os.WriteFile(f, []byte("partial"), 0o600)
	}
	old := time.Now().Add(-staleUpload - time.Minute)
	os.Chtimes(stale, old, old)
	if _, err := OpenAs(dir, "a"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{mine, stale} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s not cleared", f)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("a live upload was cleared: %v", err)
	}
	if _, err := OpenAs(dir, "../x"); err == nil {
		t.Fatal("an owner name with a path in it was taken")
	}
}

func tmpFiles(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestStageCommitDiscard(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	data := []byte("bundle bytes")
	a, err := s.Stage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Stage(bytes.NewReader(data))
	if err != nil || b.Sum != a.Sum || b.Size != int64(len(data)) {
		t.Fatalf("second Stage = %+v %v", b, err)
	}
	// Staged is not stored.
	if _, err := s.Open(a.Sum); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a staged blob is readable before Commit: %v", err)
	}
	unlock := s.Lock(a.Sum)
	if created, err := a.Commit(); !created || err != nil {
		t.Fatalf("first Commit = %v %v", created, err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(s.Path(a.Sum), old, old)
	if created, err := b.Commit(); created || err != nil {
		t.Fatalf("Commit of bytes already stored = %v %v", created, err)
	}
	if replaced, err := b.Settle(); replaced || err != nil {
		t.Fatalf("Settle with the blob in place = %v %v", replaced, err)
	}
	unlock()
	if bl, err := s.Stat(a.Sum); err != nil || time.Since(bl.ModTime) > time.Minute || bl.Size != int64(len(data)) {
		t.Fatalf("Stat after a second Commit = %+v %v, want the blob touched", bl, err)
	}
	if _, err := a.Commit(); err == nil {
		t.Fatal("a second Commit of the same staged blob succeeded")
	}
	a.Discard() // no-op after Commit
	if _, err := s.Open(a.Sum); err != nil {
		t.Fatalf("Discard after Commit removed the blob: %v", err)
	}
	c, err := s.Stage(bytes.NewReader([]byte("refused")))
	if err != nil {
		t.Fatal(err)
	}
	c.Discard()
	c.Discard()
	if es := tmpFiles(t, dir); len(es) != 0 {
		t.Fatalf("temporary files left: %v", es)
	}
	if _, err := s.Stat(c.Sum); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Stat of a discarded blob: %v", err)
	}
}

func TestLockIsPerSum(t *testing.T) {
	s, _ := Open(t.TempDir())
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	unlockA := s.Lock(a)
	s.Lock(b)() // another sum's lock is free while a's is held
	// Many takers of one sum run one at a time: the race detector would report the counter.
	var wg sync.WaitGroup
	counter := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Lock(a)()
			counter++
		}()
	}
	counter++
	unlockA()
	unlockA() // a second call does nothing
	wg.Wait()
	if counter != 51 {
		t.Fatalf("counter = %d", counter)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.locks) != 0 {
		t.Fatalf("%d locks left in the table", len(s.locks))
	}
}

// A collector and a push of the same bytes in two processes sharing the directory, which share
// no lock: whichever way they interleave, a blob whose reference is recorded stays.
func TestCollectAgainstAPushElsewhere(t *testing.T) {
	dir := t.TempDir()
	data := []byte("the same bytes, pushed again")
	collector, err := OpenAs(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	pusher, err := OpenAs(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	sum, _, _, err := collector.Put(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	present := func(what string) {
		t.Helper()
		if b, err := collector.Open(sum); err != nil {
			t.Fatalf("%s: the blob is gone: %v", what, err)
		} else {
			b.Close()
		}
	}

	// The push finds the blob in place and commits; the collector takes it out before the push
	// records its reference and finds none: the push's Settle puts its copy back.
	staged, err := pusher.Stage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if created, err := staged.Commit(); created || err != nil {
		t.Fatalf("Commit = %v %v", created, err)
	}
	if removed, err := collector.Collect(sum, func() (bool, error) { return false, nil }); !removed || err != nil {
		t.Fatalf("Collect of an unreferenced blob = %v %v", removed, err)
	}
	if replaced, err := staged.Settle(); !replaced || err != nil {
		t.Fatalf("Settle after the blob was collected = %v %v", replaced, err)
	}
	present("push settled after a collection")

	// The reference is recorded while the blob is out: the collector puts it back.
	if removed, err := collector.Collect(sum, func() (bool, error) { return true, nil }); removed || err != nil {
		t.Fatalf("Collect of a referenced blob = %v %v", removed, err)
	}
	present("collection of a referenced blob")

	// A failed look at the references keeps the blob.
	if removed, err := collector.Collect(sum, func() (bool, error) { return false, errors.New("database down") }); removed || err == nil {
		t.Fatalf("Collect with the references unknown = %v %v", removed, err)
	}
	present("collection with the references unknown")

	// A collector killed with the blob out of place: its next Open puts it back.
	if err := os.Rename(collector.Path(sum), filepath.Join(dir, "tmp", "collect-a-"+sum)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAs(dir, "a"); err != nil {
		t.Fatal(err)
	}
	present("a collector's restart")
	if es := tmpFiles(t, dir); len(es) != 0 {
		t.Fatalf("temporary files left: %v", es)
	}
	if removed, err := collector.Collect(sum, func() (bool, error) { return false, nil }); !removed || err != nil {
		t.Fatalf("Collect = %v %v", removed, err)
	}
	if _, err := collector.Open(sum); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a collected blob is still there: %v", err)
	}
}
