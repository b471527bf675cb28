// Package blobstore keeps release bundles content-addressed by sha256 in a directory: each blob
// is written to a temporary file while it is hashed, synced, and renamed into place, so a blob
// is either whole under its address or absent — an interrupted upload leaves nothing behind.
//
// Writing is two phases: Stage streams and hashes without a lock (the address is known only at
// the end), then Commit, under the per-address lock of Lock, renames the staged file into place
// or drops it when the blob is already there. Whoever removes a blob holds the same lock across
// deciding and removing, so a blob that someone has just committed and referenced under the lock
// is never taken away. Directories are 0700 and files 0600, whatever the umask.
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
	"strings"
	"sync"
	"time"
)

// Store is a blob directory.
type Store struct {
	dir   string
	owner string // whose uploads this process stages

	mu    sync.Mutex
	locks map[string]*sumLock
}

// sumLock is the mutex of one blob address, kept in Store.locks while anyone holds or waits for it.
type sumLock struct {
	mu   sync.Mutex
	refs int // holders and waiters
}

var hexSum = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Modes of everything the store writes, whatever the umask: only the server's user may read
// bundles that are not yet released, or any directory of the store.
const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// staleUpload is how long a temporary file goes unwritten before Open takes it for what a process
// killed mid-upload left: server replicas that share the directory stage their uploads in it,
// and a live upload writes its file far more often (a stalled one is cut off after the server's
// read timeout, 30 s by default).
const staleUpload = time.Hour

// Open returns the blob store rooted at dir for one process, which stages uploads in it, with
// the default owner name; see OpenAs.
func Open(dir string) (*Store, error) { return OpenAs(dir, "") }

// OpenAs returns the blob store rooted at dir, creating it, for the process named owner: server
// replicas that share one directory each open it under their own name, the same at every start
// (e.g. from the data directory). It clears the temporary files that owner left when it was
// killed mid-upload, and those of others unwritten for staleUpload: another replica's live
// uploads stay. It also brings the modes of the store's directories to 0700, for stores that
// earlier versions created more open.
func OpenAs(dir, owner string) (*Store, error) {
	if owner == "" {
		owner = "local"
	}
	if !ValidOwner(owner) {
		return nil, fmt.Errorf("blob store owner %q: want letters, digits and dashes", owner)
	}
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp")} {
		if err := mkdir(d); err != nil {
			return nil, err
		}
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "sha256", "*"))
	for _, d := range shards {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && fi.Mode().Perm() != dirMode {
			if err := os.Chmod(d, dirMode); err != nil {
				return nil, err
			}
		}
	}
	s := &Store{dir: dir, owner: owner, locks: map[string]*sumLock{}}
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	stale := time.Now().Add(-staleUpload)
	for _, t := range tmps {
		fi, err := os.Stat(t)
		if err != nil {
			continue
		}
		base := filepath.Base(t)
		ours := strings.HasPrefix(base, "upload-"+owner+"-") || strings.HasPrefix(base, "collect-"+owner+"-")
		if !ours && !fi.ModTime().Before(stale) {
			continue
		}
		// A blob taken out by a collection that did not finish goes back: only a finished
		// collection, which found it unreferenced, removes a blob.
		if sum, ok := strings.CutPrefix(base, "collect-"); ok {
			if i := strings.LastIndexByte(sum, '-'); i >= 0 && ValidSum(sum[i+1:]) {
				if _, err := os.Stat(s.Path(sum[i+1:])); errors.Is(err, os.ErrNotExist) && mkdir(filepath.Dir(s.Path(sum[i+1:]))) == nil {
					os.Rename(t, s.Path(sum[i+1:]))
					continue
				}
			}
		}
		os.Remove(t)
	}
	return s, nil
}

// mkdir creates d (and its missing parents) and sets its mode to 0700, not relying on the umask.
func mkdir(d string) error {
	if err := os.MkdirAll(d, dirMode); err != nil {
		return err
	}
	return os.Chmod(d, dirMode)
}

// ValidSum reports whether s is a lower-case hex sha256.
func ValidSum(s string) bool { return hexSum.MatchString(s) }

// Path is where the blob with sum lives.
func (s *Store) Path(sum string) string {
	return filepath.Join(s.dir, "sha256", sum[:2], sum)
}

// Lock takes the lock of the blob address sum and returns its release, which may be called more
// than once. Committing a staged blob happens under it, and so must everything that decides from
// a blob's presence or references whether to remove it: whoever holds the lock of a sum sees the
// blob and its references hold still. Locks of different sums are independent.
func (s *Store) Lock(sum string) (unlock func()) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = map[string]*sumLock{}
	}
	l := s.locks[sum]
	if l == nil {
		l = &sumLock{}
		s.locks[sum] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Unlock()
			s.mu.Lock()
			if l.refs--; l.refs == 0 {
				delete(s.locks, sum)
			}
			s.mu.Unlock()
		})
	}
}

// Staged is an upload written whole to a temporary file and hashed, not yet under its address.
// Commit puts it in place; Discard drops it. One of them must be called.
type Staged struct {
	Sum  string // sha256, lower-case hex
	Size int64

	s   *Store
	tmp string // "" once committed or discarded
}

// Stage writes what r yields to a temporary file while hashing it, and syncs it. It takes no
// lock: the address is known only at the end. On any read error (a dropped connection, a size
// limit) nothing is left behind.
func (s *Store) Stage(r io.Reader) (*Staged, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-"+s.owner+"-*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil {
		return nil, err
	}
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	ok = true
	return &Staged{Sum: hex.EncodeToString(h.Sum(nil)), Size: size, s: s, tmp: tmp.Name()}, nil
}

// Commit puts the staged blob under its address, unless the same bytes are there already: then
// the stored blob is touched, so that a collector counting age from the last write does not take
// it mid-push, and the staged copy is kept until Settle or Discard. created reports whether this
// commit made the blob. The caller must hold Lock(st.Sum).
func (st *Staged) Commit() (created bool, err error) {
	if st.tmp == "" {
		return false, errors.New("blobstore: staged blob already committed or discarded")
	}
	final := st.s.Path(st.Sum)
	if _, err := os.Stat(final); err == nil {
		now := time.Now()
		os.Chtimes(final, now, now)
		return false, nil
	}
	return st.place()
}

// Settle makes sure, once what refers to the blob is recorded, that the blob is in place: a
// collector in another process (a replica sharing the directory, which does not share Lock)
// may have taken the stored copy Commit found, after Commit and before the reference was
// recorded. Then the staged copy takes its place. It reports whether it had to.
func (st *Staged) Settle() (replaced bool, err error) {
	if st.tmp == "" {
		return false, nil
	}
	if _, err := os.Stat(st.s.Path(st.Sum)); err == nil {
		st.Discard()
		return false, nil
	}
	return st.place()
}

// place renames the staged file to the blob's address.
func (st *Staged) place() (bool, error) {
	final := st.s.Path(st.Sum)
	if err := mkdir(filepath.Dir(final)); err != nil {
		st.Discard()
		return false, err
	}
	if err := os.Rename(st.tmp, final); err != nil {
		st.Discard()
		return false, err
	}
	st.tmp = ""
	syncDir(filepath.Dir(final))
	return true, nil
}

// Discard drops the staged file; it does nothing after Commit or a first Discard.
func (st *Staged) Discard() {
	if st.tmp != "" {
		os.Remove(st.tmp)
		st.tmp = ""
	}
}

// Put stores what r yields and returns its sha256, its size and whether the blob is new: Stage,
// then Commit under the lock of the sum. On any read error nothing is stored.
func (s *Store) Put(r io.Reader) (sum string, size int64, created bool, err error) {
	st, err := s.Stage(r)
	if err != nil {
		return "", 0, false, err
	}
	unlock := s.Lock(st.Sum)
	defer unlock()
	created, err = st.Commit()
	if err != nil {
		return "", 0, false, err
	}
	return st.Sum, st.Size, created, nil
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

// Stat describes a stored blob; the error wraps os.ErrNotExist when there is none.
func (s *Store) Stat(sum string) (Blob, error) {
	if !ValidSum(sum) {
		return Blob{}, fmt.Errorf("invalid blob address %q", sum)
	}
	fi, err := os.Stat(s.Path(sum))
	if err != nil {
		return Blob{}, err
	}
	return Blob{Sum: sum, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Remove deletes a blob. Whoever decides that a blob may go must hold Lock(sum) from that
// decision through Remove.
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

// Collect removes blob sum unless keep, asked once the blob is out of its place, says to keep
// it; then the blob goes back (unless another copy was put in place meanwhile). Taking the blob
// out first is what makes this safe against a push in another process sharing the directory:
// a push that finds the blob in place before it is taken out records its reference and then
// Settles, putting its own copy back if needed; one that records its reference before keep
// reads the references has it kept. removed is false when the blob was not there.
func (s *Store) Collect(sum string, keep func() (bool, error)) (removed bool, err error) {
	if !ValidSum(sum) {
		return false, fmt.Errorf("invalid blob address %q", sum)
	}
	final := s.Path(sum)
	out := filepath.Join(s.dir, "tmp", "collect-"+s.owner+"-"+sum)
	if err := os.Rename(final, out); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	k, err := keep()
	if err != nil || k {
		if _, serr := os.Stat(final); serr == nil {
			os.Remove(out)
		} else if rerr := os.Rename(out, final); rerr != nil {
			return false, errors.Join(err, rerr)
		}
		return false, err
	}
	return true, os.Remove(out)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// ValidOwner reports whether owner can name a process in a blob store's file names.
func ValidOwner(owner string) bool {
	if owner == "" || len(owner) > 64 {
		return false
	}
	for _, c := range owner {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
