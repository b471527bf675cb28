package store

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/ferryhq/ferry/api"
)

// This file holds what every backend needs and no backend decides: reading its migrations,
// refusing a newer schema in the same words, label sets as their columns hold them, and the
// wake-up behind Changed.

// ReadMigrations returns the scripts dir/NNNN_name.sql of fsys in order: script N takes the
// schema from version N-1 to N. A gap or a repeat in the numbers is an error.
func ReadMigrations(fsys fs.FS, dir string) ([]string, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []string
	for i, n := range names {
		v, err := strconv.Atoi(strings.SplitN(path.Base(n), "_", 2)[0])
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("migration %s is out of sequence", n)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

// CheckSchemaVersion refuses a database whose schema version (have) is newer than the newest
// this build knows.
func CheckSchemaVersion(have, known int) error {
	if have > known {
		return fmt.Errorf("database schema version %d is newer than this ferry understands (%d); run a newer ferry", have, known)
	}
	return nil
}

// LabelsOrEmpty is labels, or the empty set for nil: a label column always holds a JSON object.
func LabelsOrEmpty(labels map[string]string) map[string]string {
	if labels == nil {
		return map[string]string{}
	}
	return labels
}

// Broadcast wakes all its waiters at once: Wait returns a channel that the next Fire closes.
// The zero value is ready to use.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel closed by the next Fire.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Fire wakes everyone waiting.
func (b *Broadcast) Fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Assignments gathers assignment rows by node as a backend reads them. Nodes assigned the same
// release share one copy of its strings (the signature is the largest), which the server's
// in-memory desired states then hold once per release. The zero value is ready to use.
type Assignments struct {
	byNode map[string][]api.Assignment
	shared map[[2]string]api.Assignment
}

// Add records that node is assigned a.
func (as *Assignments) Add(node string, a api.Assignment) {
	if as.byNode == nil {
		as.byNode, as.shared = map[string][]api.Assignment{}, map[[2]string]api.Assignment{}
	}
	k := [2]string{a.App, a.Version}
	if same, ok := as.shared[k]; ok {
		a = same
	} else {
		as.shared[k] = a
	}
	as.byNode[node] = append(as.byNode[node], a)
}

// ByNode returns the assignments by node name (never nil).
func (as *Assignments) ByNode() map[string][]api.Assignment {
	if as.byNode == nil {
		return map[string][]api.Assignment{}
	}
	return as.byNode
}

// Rows is what both backends' query results offer (database/sql's and pgx's), so that a scan
// loop over the same columns is written once.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanAssignments reads rows of (node, app, version, sha256, size, signature, withdrawn, channel,
// stopped, restarts).
func ScanAssignments(rows Rows) (map[string][]api.Assignment, error) {
	var out Assignments
	for rows.Next() {
		var node string
		var a api.Assignment
		if err := rows.Scan(&node, &a.App, &a.Version, &a.SHA256, &a.Size, &a.Signature, &a.Withdrawn, &a.Channel, &a.Stopped, &a.Restarts, &a.Rollout, &a.Attempt, &a.MinHealthyTime, &a.HealthyDeadline); err != nil {
			return nil, err
		}
		out.Add(node, a)
	}
	return out.ByNode(), rows.Err()
}

// ScanNodeCounts reads rows of (site, status, count) into the Nodes counts of sites.
func ScanNodeCounts(rows Rows, sites []api.Site) error {
	idx := make(map[string]int, len(sites))
	for i, st := range sites {
		idx[st.Name] = i
	}
	for rows.Next() {
		var site, status string
		var n int
		if err := rows.Scan(&site, &status, &n); err != nil {
			return err
		}
		if i, ok := idx[site]; ok {
			sites[i].Nodes[status] = n
		}
	}
	return rows.Err()
}
