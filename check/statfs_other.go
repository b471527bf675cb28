//go:build !linux

package check

// statfs is Linux's only: Statfs_t differs from one system to the next.
func statfs(string) (space, error) { return space{}, errNoStatfs }
