package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildIsReproducible(t *testing.T) {
	files := map[string]string{ManifestName: good, "bin/hello": "#!/bin/sh\necho hi\n", "etc/app.conf": "x=1\n"}
	a, b := writeTree(t, files), writeTree(t, files)
	os.Chtimes(filepath.Join(b, "etc/app.conf"), time.Unix(1e9, 0), time.Unix(1e9, 0))
	os.Symlink("hello", filepath.Join(a, "bin/hi"))
	os.Symlink("hello", filepath.Join(b, "bin/hi"))
	var ba, bb bytes.Buffer
	_, suma, err := Build(a, &ba)
	if err != nil {
		t.Fatal(err)
	}
	m, sumb, err := Build(b, &bb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ba.Bytes(), bb.Bytes()) || suma != sumb || suma != Sum(ba.Bytes()) {
		t.Fatalf("two builds of the same tree differ (%s vs %s)", suma, sumb)
	}
	if m.App != "hello" {
		t.Fatalf("manifest %+v", m)
	}
	got, err := Read(bytes.NewReader(ba.Bytes()), Limits{})
	if err != nil || got.Version != "1.4.0" {
		t.Fatalf("Read of a built bundle: %+v %v", got, err)
	}
	// The exec bit survives; times and owners are fixed.
	gz, _ := gzip.NewReader(bytes.NewReader(ba.Bytes()))
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Uname != "" {
			t.Fatalf("entry %s has time %v uid %d %q", h.Name, h.ModTime, h.Uid, h.Uname)
		}
		if h.Name == "bin/hello" && h.Mode != 0o755 {
			t.Fatalf("bin/hello mode %o", h.Mode)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	if _, _, err := Build(writeTree(t, map[string]string{"x": "y"}), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no ferry.yaml") {
		t.Fatalf("no manifest: %v", err)
	}
	dir := writeTree(t, map[string]string{ManifestName: good})
	os.Symlink("/etc/passwd", filepath.Join(dir, "pw"))
	if _, _, err := Build(dir, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("escaping symlink: %v", err)
	}
}

type entry struct {
	name, body, link string
	typ              byte
}

func tarball(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o644}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestReadRefusesHostileBundles(t *testing.T) {
	man := entry{name: ManifestName, body: good}
	ok := tarball(t, man, entry{name: "bin/x", body: "x"})
	if _, err := Read(bytes.NewReader(ok), Limits{}); err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), ok...)
	corrupt[len(corrupt)/2] ^= 0xff
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"not gzip", []byte("PK\x03\x04 zip file"), "not gzip"},
		{"truncated", ok[:len(ok)-10], "corrupt"},
		{"corrupt", corrupt, "corrupt"},
		{"no manifest", tarball(t, entry{name: "bin/x", body: "x"}), "no ferry.yaml"},
		{"dot-dot", tarball(t, man, entry{name: "../evil", body: "x"}), "climbs out"},
		{"nested dot-dot", tarball(t, man, entry{name: "a/../../evil", body: "x"}), "climbs out"},
		{"absolute", tarball(t, man, entry{name: "/etc/cron.d/x", body: "x"}), "relative"},
		{"symlink out", tarball(t, man, entry{name: "l", link: "../../etc", typ: tar.TypeSymlink}), "outside"},
		{"absolute symlink", tarball(t, man, entry{name: "l", link: "/etc/passwd", typ: tar.TypeSymlink}), "outside"},
		{"hard link out", tarball(t, man, entry{name: "h", link: "/etc/shadow", typ: tar.TypeLink}), "hard link"},
		{"device", tarball(t, man, entry{name: "dev", typ: tar.TypeChar}), "only files"},
		{"fifo", tarball(t, man, entry{name: "fifo", typ: tar.TypeFifo}), "only files"},
		{"duplicate", tarball(t, man, entry{name: "a", body: "1"}, entry{name: "./a", body: "2"}), "twice"},
		{"manifest symlink", tarball(t, entry{name: "m", body: good}, entry{name: ManifestName, link: "m", typ: tar.TypeSymlink}), "regular file"},
		{"huge manifest", tarball(t, entry{name: ManifestName, body: good + "#" + strings.Repeat("x", MaxManifestSize)}), "larger than"},
		{"bad manifest", tarball(t, entry{name: ManifestName, body: "app: x\nversion: 1\nclass: minor\n"}), "invalid version"},
		// What a push refuses before anything is stored: a program outside the release, absurd
		// restart limits, a huge environment.
		{"escaping command", tarball(t, entry{name: ManifestName, body: hostile("command: [../../bin/x]")}), "processes.0.command: program \"../../bin/x\" leaves the release directory"},
		{"absurd restarts", tarball(t, entry{name: ManifestName, body: hostile("command: [bin/x]\n    restart: {burst: 100000, window: 1000h}")}), "processes.0.restart.burst"},
		{"huge env", tarball(t, entry{name: ManifestName, body: hostile("command: [bin/x]\n    env: {A: \"" + strings.Repeat("x", MaxEnvBytes) + "\"}")}), "processes.0.env: 32770 bytes of variables"},
	}
	for _, c := range cases {
		_, err := Read(bytes.NewReader(c.b), Limits{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	if _, err := Read(bytes.NewReader(tarball(t, man, entry{name: "big", body: strings.Repeat("x", 100)})), Limits{MaxUnpacked: 50}); err == nil {
		t.Error("unpacked-size limit not enforced")
	}
}

// hostile is a manifest whose one process has the given fields.
func hostile(fields string) string {
	return "app: x\nversion: 1.0.0\nclass: minor\nprocesses:\n  - name: web\n    " + fields + "\n"
}

// With no limit given, a bundle may hold DefaultMaxUnpacked (4 GiB) of file contents.
func TestDefaultMaxUnpacked(t *testing.T) {
	if DefaultMaxUnpacked != 4<<30 {
		t.Fatalf("DefaultMaxUnpacked = %d", DefaultMaxUnpacked)
	}
	var buf bytes.Buffer
	gzBundle(t, &buf, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: DefaultMaxUnpacked - int64(len(good)) + 1, Mode: 0o644})
	if _, err := Read(bytes.NewReader(buf.Bytes()), Limits{}); err == nil || !strings.Contains(err.Error(), "more than 4294967296 bytes") {
		t.Fatalf("Read = %v, want the 4 GiB default", err)
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: ManifestName, Typeflag: tar.TypeReg, Size: int64(len(good)), Mode: 0o644})
	tw.Write([]byte(good))
	tw.Close()
	gz.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Add(escapeChain(f))
	f.Add(libraryChain(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(bytes.NewReader(b), Limits{MaxEntries: 1000, MaxUnpacked: 1 << 20})
		if err != nil {
			return
		}
		if _, err := ParseVersion(m.Version); err != nil {
			t.Fatalf("accepted a bundle with bad version %q", m.Version)
		}
	})
}
