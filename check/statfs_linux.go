package check

import "golang.org/x/sys/unix"

// statfs measures the file system that holds path.
func statfs(path string) (space, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(path, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return space{}, err
		}
		break
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	free := min(st.Bfree, st.Blocks)
	return space{
		size:      st.Blocks * bs,
		used:      (st.Blocks - free) * bs,
		avail:     min(st.Bavail, free) * bs,
		files:     st.Files,
		filesFree: st.Ffree,
	}, nil
}
