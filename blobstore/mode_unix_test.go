//go:build unix

package blobstore

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestModesIgnoreUmask checks that the store's directories are 0700 and its blobs 0600 under a
// permissive umask, and that Open tightens the directories of a store made more open earlier.
func TestModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, _, _, err := s.Put(bytes.NewReader([]byte("a bundle")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stage(bytes.NewReader([]byte("staged, not committed")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Discard()
	check := func(p string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o, want %04o", p, got, want)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp"), filepath.Dir(s.Path(sum))} {
		check(d, 0o700)
	}
	check(s.Path(sum), 0o600)
	check(st.tmp, 0o600)

	// A store whose directories an earlier version made 0750 is tightened when opened.
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp"), filepath.Dir(s.Path(sum))} {
		os.Chmod(d, 0o750)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp"), filepath.Dir(s.Path(sum))} {
		check(d, 0o700)
	}
}
