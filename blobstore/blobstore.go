// Package blobstore keeps release bundles content-addressed by sha256 in a directory: each blob
// is written to a temporary file while it is hashed, synced, and renamed into place, so a blob
// is either whole under its address or absent — an interrupted upload leaves nothing behind.
package blobstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Store is a blob directory.
type Store struct {
	dir string
}

var hexSum = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Open returns the blob store rooted at dir, creating it, and clears temporary files that an
// earlier process left when it was killed mid-upload.
func Open(dir string) (*Store, error) {
	for _, d := range []string{filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	return &Store{dir: dir}, nil
}

// ValidSum reports whether s is a lower-case hex sha256.
func ValidSum(s string) bool { return hexSum.MatchString(s) }

// Path is where the blob with sum lives.
func (s *Store) Path(sum string) string {
	return filepath.Join(s.dir, "sha256", sum[:2], sum)
}

// Put stores what r yields and returns its sha256, its size and whether the blob is new. On any
// read error (a dropped connection, a size limit) nothing is stored.
func (s *Store) Put(r io.Reader) (sum string, size int64, created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return "", 0, false, err
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return "", 0, false, err
	}
	if err := tmp.Sync(); err != nil {
		return "", 0, false, err
	}
	if err := tmp.Close(); err != nil {
		return "", 0, false, err
	}
	sum = hex.EncodeToString(h.Sum(nil))
	final := s.Path(sum)
	if _, err := os.Stat(final); err == nil {
		// The same bytes are already here; the deferred cleanup drops ours. Touch the blob so a
		// collector that counts age from the last write does not take it mid-push.
		now := time.Now()
		os.Chtimes(final, now, now)
		return sum, size, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return "", 0, false, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", 0, false, err
	}
	tmp = nil
	syncDir(filepath.Dir(final))
	return sum, size, true, nil
}

// Blob is a stored blob as listed.
type Blob struct {
	Sum     string
	Size    int64
	ModTime time.Time
}

// List returns every stored blob.
func (s *Store) List() ([]Blob, error) {
	var out []Blob
	err := filepath.WalkDir(filepath.Join(s.dir, "sha256"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !ValidSum(d.Name()) {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		out = append(out, Blob{Sum: d.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	return out, err
}

// Open opens a blob for reading.
func (s *Store) Open(sum string) (*os.File, error) {
	if !ValidSum(sum) {
		return nil, fmt.Errorf("invalid blob address %q: want 64 lower-case hex digits", sum)
	}
	f, err := os.Open(s.Path(sum))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob sha256:%s: %w", sum, os.ErrNotExist)
	}
	return f, err
}

// Remove deletes a blob.
func (s *Store) Remove(sum string) error {
	if !ValidSum(sum) {
		return fmt.Errorf("invalid blob address %q", sum)
	}
	err := os.Remove(s.Path(sum))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
