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

// deps lists the module's packages that pkg is built from (not its tests), pkg included, without
// the module path: "client", "api".
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.ImportPath}}{{end}}{{end}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var ds []string
	for _, d := range strings.Fields(string(out)) {
		ds = append(ds, strings.TrimPrefix(d, module+"/"))
	}
	return ds
}

// within reports whether pkg is one of dirs or below one of them.
func within(pkg string, dirs ...string) bool {
	for _, d := range dirs {
		if pkg == d || strings.HasPrefix(pkg, d+"/") {
			return true
		}
	}
	return false
}

// The agent and the client side never reach into server, store or web code; they talk to the
// server through the client package alone.
func TestImportDirection(t *testing.T) {
	for _, pkg := range []string{"./agent", "./client", "./api", "./labels", "./clock", "./pki", "./supervise", "./check"} {
		for _, dep := range deps(t, pkg) {
			if within(dep, "server", "store", "web") {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
}

// The supervisor and the check runners serve the agent without knowing it: specs in, processes
// and results out. They know nothing of the server, its API or releases: of the module's
// packages they use the clock alone.
func TestNodeToolsKnowOnlyTheClock(t *testing.T) {
	for _, pkg := range []string{"supervise", "check"} {
		for _, dep := range deps(t, "./"+pkg) {
			if dep != pkg && dep != "clock" {
				t.Errorf("%s imports %s; it may use only clock", pkg, dep)
			}
		}
	}
}

// Services are plain Go: they know nothing of HTTP, the server that serves them, or the
// operator's and the node's side. The kinds of failure they return are a leaf.
func TestServicesStayPlain(t *testing.T) {
	for _, pkg := range []string{"./inventory", "./catalog", "./assign", "./rollout", "./notify", "./overview", "./probe", "./fault", "./health"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "net/http" {
				t.Errorf("%s imports net/http; the HTTP layer maps its failures", pkg)
			}
		}
		for _, dep := range deps(t, pkg) {
			if within(dep, "server", "cli", "daemon", "agent", "client", "web") {
				t.Errorf("%s imports %s", pkg, dep)
			}
		}
	}
	for _, dep := range deps(t, "./fault") {
		if dep != "fault" {
			t.Errorf("fault imports %s; it is a leaf", dep)
		}
	}
}

// The CLI holds the operator verbs only: it reaches the server through client, and of the
// module's packages uses only the leaves a client needs. The daemons it runs come from the
// daemon package, which cmd/ferry adds.
func TestCLIReachesServerOnlyThroughClient(t *testing.T) {
	leaves := []string{"client", "api", "labels", "pki", "release", "signing", "clock"}
	for _, dep := range deps(t, "./cli") {
		switch {
		case dep == "cli":
		case within(dep, "server", "store", "agent", "web", "daemon"):
			t.Errorf("cli imports %s; operator verbs talk to the server through client", dep)
		case !within(dep, leaves...):
			t.Errorf("cli imports %s; it may use only %s", dep, strings.Join(leaves, ", "))
		}
	}
}

// Only the daemon package and commands (package main) start a server or an agent: every other
// package outside those two trees uses them over the API, through client.
func TestOnlyDaemonWiresServerAndAgent(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Name}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, name := strings.TrimPrefix(f[0], module+"/"), f[1]
		if name == "main" || pkg == "daemon" || within(pkg, "server", "agent") {
			continue
		}
		checked++
		for _, imp := range f[2:] {
			if dep := strings.TrimPrefix(imp, module+"/"); dep != imp && within(dep, "server", "agent") {
				t.Errorf("%s imports %s; only daemon and commands wire the server and the agent", pkg, dep)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list found no package to check")
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
