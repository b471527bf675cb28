//go:build unix

package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on file+".lock", held until the returned file is closed:
// one server per SQLite database. A second server on the same data directory would sweep,
// collect blobs and push beside the first, each believing it is alone.
func lockFile(file string) (*os.File, error) {
	f, err := os.OpenFile(file+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the database %s is in use by another ferry server: one server per SQLite database (several replicas need PostgreSQL)", file)
		}
		return nil, fmt.Errorf("lock %s: %w", file, err)
	}
	return f, nil
}
