package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Unpack writes the tree a bundle holds: contents, exec bits and links, nothing else.
func TestUnpack(t *testing.T) {
	src := writeTree(t, map[string]string{ManifestName: good, "bin/hello": "#!/bin/sh\necho hi\n", "etc/deep/app.conf": "x=1\n"})
	os.Symlink("hello", filepath.Join(src, "bin/hi"))
	var b bytes.Buffer
	if _, _, err := Build(src, &b); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	m, err := Unpack(bytes.NewReader(b.Bytes()), dst, Limits{})
	if err != nil || m.App != "hello" {
		t.Fatalf("Unpack = %+v %v", m, err)
	}
	for name, want := range map[string]string{"bin/hello": "#!/bin/sh\necho hi\n", "etc/deep/app.conf": "x=1\n", "bin/hi": "#!/bin/sh\necho hi\n", ManifestName: good} {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q %v", name, got, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "bin/hello")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hello mode %v %v", fi.Mode(), err)
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "bin/hi")); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("bin/hi is not a symlink: %v", fi.Mode())
	}
}

// A bundle that passes the lexical checks but escapes through a chain of symlinks at unpack
// time ("y" → ".", then "x" → "y/..", which the kernel resolves above the root) cannot write
// outside the directory.
func TestUnpackStaysInside(t *testing.T) {
	man := entry{name: ManifestName, body: good}
	cases := map[string][]byte{
		"symlink chain": tarball(t, man, entry{name: "y", link: ".", typ: tar.TypeSymlink},
			entry{name: "x", link: "y/..", typ: tar.TypeSymlink}, entry{name: "x/evil", body: "pwned"}),
	}
	for name, b := range cases {
		parent := t.TempDir()
		dst := filepath.Join(parent, "root")
		os.Mkdir(dst, 0o755)
		_, err := Unpack(bytes.NewReader(b), dst, Limits{})
		if err == nil || !strings.Contains(err.Error(), "unpack") {
			t.Errorf("%s: Unpack = %v, want a refusal", name, err)
		}
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Errorf("%s: something was written beside the root: %v", name, ents)
		}
	}
	// Setuid and world-writable bits are dropped.
	var buf bytes.Buffer
	gzBundle(t, &buf, &tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4777, Size: 1})
	dst0 := t.TempDir()
	if _, err := Unpack(bytes.NewReader(buf.Bytes()), dst0, Limits{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dst0, "bin/su")); err != nil || fi.Mode() != 0o755 {
		t.Fatalf("bin/su mode %v %v", fi.Mode(), err)
	}
	// A hostile bundle is refused by the same checks as Read, before anything climbs out.
	dst := t.TempDir()
	if _, err := Unpack(bytes.NewReader(tarball(t, man, entry{name: "../evil", body: "x"})), dst, Limits{}); err == nil || !strings.Contains(err.Error(), "climbs out") {
		t.Fatalf("dot-dot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
		t.Fatal("../evil was written")
	}
}

func FuzzUnpack(f *testing.F) {
	var buf bytes.Buffer
	Build(writeTreeF(f), &buf)
	f.Add(buf.Bytes())
	f.Add(escapeChain(f))
	f.Add(libraryChain(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "root")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		Unpack(bytes.NewReader(b), dst, Limits{MaxEntries: 1000, MaxUnpacked: 1 << 20})
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("unpack wrote beside its root: %v", ents)
		}
	})
}

func writeTreeF(f *testing.F) string {
	dir := f.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, ManifestName), []byte(good), 0o644)
	os.WriteFile(filepath.Join(dir, "bin/x"), []byte("x"), 0o755)
	os.Symlink("x", filepath.Join(dir, "bin/l"))
	return dir
}

// gzBundle writes a bundle of the manifest and one file with the given header (content "x").
func gzBundle(t *testing.T, w *bytes.Buffer, h *tar.Header) {
	t.Helper()
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Size: int64(len(good)), Mode: 0o644})
	tw.Write([]byte(good))
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("x"))
	tw.Close()
	gz.Close()
}
