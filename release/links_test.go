package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func symlink(name, target string) entry { return entry{name: name, link: target, typ: tar.TypeSymlink} }

// escapeChain is the bundle an outside probe pushed: each link is inside the bundle when read
// on its own, but "evil" is made through "up", which points at the root, so it lands in the
// root and its target climbs five levels above it.
func escapeChain(t testing.TB) []byte {
	return tarball(t, entry{name: ManifestName, body: good},
		symlink("d1/d2/d3/d4/d5/up", "../../../../.."),
		symlink("d1/d2/d3/d4/d5/up/evil", "../../../../../etc"))
}

// libraryChain is a legitimate chain of links that stays inside: x → lib/x.so.1, through the
// directory link lib, to usr/lib/x.so.1.2.
func libraryChain(t testing.TB) []byte {
	return tarball(t, entry{name: ManifestName, body: good}, symlink("lib", "usr/lib"), entry{name: "usr/lib/x.so.1.2", body: "elf"},
		symlink("usr/lib/x.so.1", "x.so.1.2"), symlink("x", "lib/x.so.1"))
}

// chain returns links l0 → l1 → … → ln → f, so l0 is n+1 hops from the file f.
func chain(n int) []entry {
	es := []entry{{name: ManifestName, body: good}, {name: "f", body: "x"}}
	for i := 0; i < n; i++ {
		es = append(es, symlink(fmt.Sprintf("l%d", i), fmt.Sprintf("l%d", i+1)))
	}
	return append(es, symlink(fmt.Sprintf("l%d", n), "f"))
}

// Links are checked where they really point, through the other links of the bundle, not one
// at a time.
func TestReadResolvesSymlinkChains(t *testing.T) {
	man := entry{name: ManifestName, body: good}
	refused := []struct {
		name string
		b    []byte
		want string
	}{
		{"probe", escapeChain(t), `bundle entry "d1/d2/d3/d4/d5/up/evil" is under "d1/d2/d3/d4/d5/up", which is a symlink`},
		{"through a directory link", tarball(t, man, symlink("d1/d2/up", "../.."), symlink("d1/d2/out", "up/../etc")),
			`bundle entry "d1/d2/out" is a symlink to "up/../etc", which resolves outside the bundle`},
		{"link to a directory link", tarball(t, man, symlink("top", "."), symlink("top2", "top"), symlink("esc", "top2/..")),
			`bundle entry "esc" is a symlink to "top2/..", which resolves outside the bundle`},
		{"a later link moves an earlier one", tarball(t, man, symlink("x", "d/.."), symlink("d", ".")),
			`bundle entry "x" is a symlink to "d/..", which resolves outside the bundle`},
		{"loop", tarball(t, man, symlink("a", "b"), symlink("b", "a")), `bundle entry "a" is a symlink to "b", which resolves through a loop of symlinks`},
		{"self loop", tarball(t, man, symlink("s", "s/x")), `bundle entry "s" is a symlink to "s/x", which resolves through a loop of symlinks`},
		{"41 hops", tarball(t, chain(40)...), `bundle entry "l0" is a symlink to "l1", which resolves through more than 40 symlinks`},
		{"file under a link", tarball(t, man, symlink("lib", "usr/lib"), entry{name: "lib/x", body: "x"}),
			`bundle entry "lib/x" is under "lib", which is a symlink`},
		{"file under a file", tarball(t, man, entry{name: "f", body: "x"}, entry{name: "f/x", body: "x"}),
			`bundle entry "f/x" is under "f", which is not a directory`},
		{"link over a directory", tarball(t, man, entry{name: "a/b", body: "x"}, symlink("a", "c")),
			`bundle entry "a" is not a directory, but earlier entries are under it`},
		{"link target of PATH_MAX", tarball(t, man, symlink("long", strings.Repeat("a/", 2048))),
			`bundle entry "long"…: names and link targets must be shorter than 4096 bytes`},
	}
	for _, c := range refused {
		_, err := Read(bytes.NewReader(c.b), Limits{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %s", c.name, err, c.want)
		}
	}
	accepted := map[string][]byte{
		"library chain":   libraryChain(t),
		"40 hops":         tarball(t, chain(39)...),
		"dangling":        tarball(t, man, symlink("a/b", "../nothing/yet")),
		"directory later": tarball(t, man, symlink("l", "d/f"), entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", body: "x"}),
	}
	for name, b := range accepted {
		if _, err := Read(bytes.NewReader(b), Limits{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Unpack refuses the probe's bundle, and a legitimate chain unpacks to links that resolve to
// the file they name.
func TestUnpackSymlinkChains(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "root")
	os.Mkdir(dst, 0o755)
	if _, err := Unpack(bytes.NewReader(escapeChain(t)), dst, Limits{}); err == nil || !strings.Contains(err.Error(), "which is a symlink") {
		t.Fatalf("probe: Unpack = %v, want a refusal", err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "evil")); err == nil {
		t.Fatal("evil was made in the root")
	}

	dst = t.TempDir()
	if _, err := Unpack(bytes.NewReader(libraryChain(t)), dst, Limits{}); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dst)
	if got, err := filepath.EvalSymlinks(filepath.Join(dst, "x")); err != nil || got != filepath.Join(real, "usr/lib/x.so.1.2") {
		t.Fatalf("x resolves to %q %v", got, err)
	}
}

// Build refuses a tree whose links escape together, so a bundle push would refuse is not made.
func TestBuildRefusesSymlinkChain(t *testing.T) {
	dir := writeTree(t, map[string]string{ManifestName: good, "d1/d2/f": "x"})
	os.Symlink("../..", filepath.Join(dir, "d1/d2/up"))
	os.Symlink("up/../etc", filepath.Join(dir, "d1/d2/out"))
	_, _, err := Build(dir, &bytes.Buffer{})
	if want := `bundle entry "d1/d2/out" is a symlink to "up/../etc", which resolves outside the bundle`; err == nil || err.Error() != want {
		t.Fatalf("Build = %v, want %s", err, want)
	}
}
