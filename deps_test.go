// Package ferry_test holds repository-wide checks: import direction and package docs.
package ferry_test

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/ferryhq/ferry"

// The agent and the CLI's client side never reach into server, store or web code; they talk
// to the server through the client package alone.
func TestImportDirection(t *testing.T) {
	forbidden := []string{module + "/server", module + "/store", module + "/web"}
	for _, pkg := range []string{"./agent", "./client", "./api", "./labels", "./clock", "./pki"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s imports %s", pkg, dep)
				}
			}
		}
	}
}

// Every package says what it is for, exactly once.
func TestPackageDocs(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" {
			return filepath.SkipDir
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for name, p := range pkgs {
			docs := 0
			for _, f := range p.Files {
				if f.Doc != nil {
					docs++
				}
			}
			if docs != 1 {
				t.Errorf("package %s (%s) has %d package doc comments, want 1", name, path, docs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
