package blobstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
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
	// A temporary file left by a killed process is cleared at the next Open.
	os.WriteFile(filepath.Join(dir, "tmp", "upload-123"), []byte("partial"), 0o600)
	Open(dir)
	if _, err := os.Stat(filepath.Join(dir, "tmp", "upload-123")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("stale upload not cleared")
	}
}
