package release

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
)

// Unpack checks a bundle as Read does and writes its tree into dir, which must exist and be
// empty. Files are written through an os.Root, so no entry can reach outside dir, even through
// a symlink an earlier entry made; each file is synced before Unpack returns. On error dir
// holds a partial tree, or a whole one when a symlink is refused at the end (where a link
// resolves is only known once every link is read): callers unpack into a scratch directory
// and rename it into place.
func Unpack(r io.Reader, dir string, lim Limits) (*Manifest, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	m, err := walk(r, lim, func(hdr *tar.Header, name string, content io.Reader) error {
		// Owners are the agent's; modes keep the exec bits and drop setuid, setgid, sticky and
		// write access for others.
		perm := hdr.FileInfo().Mode().Perm() & 0o755
		if parent := path.Dir(name); parent != "." && hdr.Typeflag != tar.TypeDir {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			return root.MkdirAll(name, 0o755)
		case tar.TypeReg:
			return writeFile(root, name, content, perm|0o600)
		case tar.TypeSymlink:
			return root.Symlink(hdr.Linkname, name)
		case tar.TypeLink:
			target, _ := entryName(hdr.Linkname)
			return root.Link(target, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	return m, nil
}

func writeFile(root *os.Root, name string, content io.Reader, perm os.FileMode) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
