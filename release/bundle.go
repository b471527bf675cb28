package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A bundle is a tar.gz with ferry.yaml at its root. Build writes one reproducibly: entries in
// sorted order, fixed times, owners and modes, so the same tree gives the same bytes (and the
// same sha256) on any machine.

// epoch is the fixed modification time of every entry.
var epoch = time.Unix(0, 0).UTC()

// Build writes the bundle of dir to w and returns its manifest and sha256.
func Build(dir string, w io.Writer) (*Manifest, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%s has no %s at its root", dir, ManifestName)
	}
	if err != nil {
		return nil, "", err
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, "", err
	}
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Strings(paths)
	t := newTree(math.MaxInt)
	h := sha256.New()
	gz, _ := gzip.NewWriterLevel(io.MultiWriter(w, h), gzip.BestCompression)
	tw := tar.NewWriter(gz)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		name := filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, "", err
		}
		hdr := &tar.Header{Name: name, ModTime: epoch, Format: tar.FormatPAX, Mode: 0o644}
		switch {
		case fi.Mode().IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if fi.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, "", err
			}
			if !inside(name, target) {
				return nil, "", fmt.Errorf("%s: symlink to %q points outside the bundle", name, target)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		default:
			return nil, "", fmt.Errorf("%s: only files, directories and symlinks can go in a bundle", name)
		}
		if err := t.add(name, hdr.Typeflag, hdr.Linkname); err != nil {
			return nil, "", err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return nil, "", err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return nil, "", fmt.Errorf("%s changed while bundling: %w", name, err)
			}
		}
	}
	if err := t.checkLinks(); err != nil {
		return nil, "", err
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	return m, hex.EncodeToString(h.Sum(nil)), nil
}

// inside reports whether a symlink at name with target stays within the bundle root.
func inside(name, target string) bool {
	if path.IsAbs(target) {
		return false
	}
	p := path.Join(path.Dir(name), target)
	return p != ".." && !strings.HasPrefix(p, "../")
}

// DefaultMaxUnpacked is the total size of file contents a bundle may hold when
// Limits.MaxUnpacked is zero.
const DefaultMaxUnpacked int64 = 4 << 30

// Limits bound what Read and Unpack accept; a zero field takes its default.
type Limits struct {
	// Files, directories (counting those only implied by the names under them) and links;
	// default 100,000.
	MaxEntries int
	// Total bytes of file contents; default DefaultMaxUnpacked (4 GiB).
	MaxUnpacked int64
}

// Read checks a bundle from r without unpacking it to disk and returns its manifest. It refuses
// corrupt gzip or tar, a missing or oversized manifest, entries that are absolute or climb out
// with "..", duplicates, entries under a symlink or a file, symlinks that lead outside (followed
// through the bundle's other symlinks, as the kernel would), hard links to anything but an
// earlier file, and devices, FIFOs and sockets.
func Read(r io.Reader, lim Limits) (*Manifest, error) { return walk(r, lim, nil) }

// entryFunc receives each entry that passed the checks, with its cleaned name and content.
type entryFunc func(hdr *tar.Header, name string, content io.Reader) error

// walk checks a bundle entry by entry, handing each checked entry to fn when fn is not nil.
func walk(r io.Reader, lim Limits, fn entryFunc) (*Manifest, error) {
	if lim.MaxEntries == 0 {
		lim.MaxEntries = 100_000
	}
	if lim.MaxUnpacked == 0 {
		lim.MaxUnpacked = DefaultMaxUnpacked
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("bundle is not gzip-compressed: %v", err)
	}
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	t := newTree(lim.MaxEntries)
	var manifest []byte
	var total int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle is corrupt: %v", err)
		}
		// Linux refuses paths and link targets of PATH_MAX or more, so no installable bundle
		// has them; refusing them here also bounds what the link check holds and walks.
		if len(hdr.Name) >= maxPath || len(hdr.Linkname) >= maxPath {
			return nil, fmt.Errorf("bundle entry %.64q…: names and link targets must be shorter than %d bytes", hdr.Name, maxPath)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if err := t.add(name, hdr.Typeflag, hdr.Linkname); err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			total += hdr.Size
			if hdr.Size < 0 || total > lim.MaxUnpacked {
				return nil, fmt.Errorf("bundle unpacks to more than %d bytes", lim.MaxUnpacked)
			}
			if name == ManifestName {
				if hdr.Size > MaxManifestSize {
					return nil, fmt.Errorf("%s is larger than %d bytes", ManifestName, MaxManifestSize)
				}
				if manifest, err = io.ReadAll(tr); err != nil {
					return nil, fmt.Errorf("bundle is corrupt: %v", err)
				}
			}
		case tar.TypeSymlink:
			if !inside(name, hdr.Linkname) {
				return nil, fmt.Errorf("bundle entry %q is a symlink to %q, outside the bundle", name, hdr.Linkname)
			}
			if name == ManifestName {
				return nil, fmt.Errorf("%s must be a regular file", ManifestName)
			}
		case tar.TypeLink:
			target, err := entryName(hdr.Linkname)
			if err != nil || t.typeOf(target) != tar.TypeReg {
				return nil, fmt.Errorf("bundle entry %q is a hard link to %q, which is not an earlier file of the bundle", name, hdr.Linkname)
			}
		default:
			return nil, fmt.Errorf("bundle entry %q has type %q: only files, directories and links are allowed", name, string(hdr.Typeflag))
		}
		if fn != nil {
			var content io.Reader = tr
			if name == ManifestName {
				content = bytes.NewReader(manifest)
			}
			if err := fn(hdr, name, content); err != nil {
				return nil, err
			}
		}
	}
	// Drain the gzip stream so a truncated or corrupt trailer is noticed too.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return nil, fmt.Errorf("bundle is corrupt: %v", err)
	}
	if err := t.checkLinks(); err != nil {
		return nil, err
	}
	if manifest == nil {
		return nil, fmt.Errorf("bundle has no %s at its root", ManifestName)
	}
	return ParseManifest(manifest)
}

// entryName cleans a tar entry name and refuses one that is absolute or leaves the root.
func entryName(raw string) (string, error) {
	if raw == "" || strings.HasPrefix(raw, "/") || strings.ContainsRune(raw, 0) || strings.Contains(raw, `\`) {
		return "", fmt.Errorf("bundle entry %q: names must be relative paths inside the bundle", raw)
	}
	for _, part := range strings.Split(strings.TrimSuffix(raw, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("bundle entry %q climbs out of the bundle with ..", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return "", fmt.Errorf("bundle entry %q names the bundle root", raw)
	}
	return name, nil
}

// maxPath is Linux's PATH_MAX: paths and link targets must be shorter.
const maxPath = 4096

// Sum returns the sha256 of b as hex (the content address of a bundle held in memory).
func Sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
