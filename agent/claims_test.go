package agent

import (
	"testing"

	"github.com/ferryhq/ferry/release"
)

// Two agents of one machine never give the same port: a port one has claimed is not the
// other's until the first gives it up (or its process ends, which drops the lock).
func TestPortClaims(t *testing.T) {
	dir := t.TempDir()
	var warned []string
	log := func(msg string, _ ...any) { warned = append(warned, msg) }
	a, b := newPortClaims(dir, log), newPortClaims(dir, log)
	t.Cleanup(func() { a.close(); b.close() })
	if !a.claim(40001) || !a.claim(40001) {
		t.Fatal("a cannot claim a free port, or the one it holds")
	}
	if b.claim(40001) {
		t.Fatal("b claimed a's port")
	}
	a.release(40001)
	if !b.claim(40001) {
		t.Fatal("b cannot claim the port a gave up")
	}

	// An app's port that another agent has claimed meanwhile is given up for a new one.
	m := &release.Manifest{Ports: []release.Port{{Name: "http"}}}
	got, err := ports(m, map[string]int{"http": 40001}, nil, a.claim)
	if err != nil || got["http"] == 40001 || got["http"] == 0 {
		t.Fatalf("a's ports %v, %v: want a new port, not b's 40001", got, err)
	}
	if b.claim(got["http"]) {
		t.Fatalf("b claimed %d, which a gave its app", got["http"])
	}
	if len(warned) != 0 {
		t.Fatalf("warned %v", warned)
	}

	// Without a usable directory the agent says so once and goes on.
	c := newPortClaims("/proc/no-such-dir/claims", log)
	if !c.claim(40002) || !c.claim(40003) || len(warned) != 1 {
		t.Fatalf("without claims: warned %v", warned)
	}
}
