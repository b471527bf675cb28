package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ferryhq/ferry/store"
)

// Replicas report the streams they hold; a stream given up leaves the node's last-seen time, and
// a replica gives up only streams it holds, not one another replica has taken since.
func testReplicas(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	enroll(t, s, "ams", "n2")
	enroll(t, s, "ams", "n3")
	report := func(r store.ReplicaReport) {
		t.Helper()
		if err := s.ReportReplica(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	holders := func() map[string]store.StreamHolder {
		t.Helper()
		h, err := s.StreamHolders(ctx, []string{"n1", "n2", "n3", "ghost"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h["ghost"]; ok || len(h) != 3 {
			t.Fatalf("StreamHolders = %+v; want n1, n2 and n3 only", h)
		}
		return h
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	for name, h := range holders() {
		if h.Replica != "" || !h.ReplicaSeen.IsZero() {
			t.Fatalf("%s held before any report: %+v", name, h)
		}
	}
	report(store.ReplicaReport{ID: "a", Addr: "a:8443", Started: t0, Now: at(1), Opened: []string{"n1", "n2"}})
	report(store.ReplicaReport{ID: "b", Started: t0, Now: at(2), Opened: []string{"n2"}})
	h := holders()
	if h["n1"].Replica != "a" || !h["n1"].ReplicaSeen.Equal(at(1)) || h["n2"].Replica != "b" || !h["n2"].ReplicaSeen.Equal(at(2)) || h["n3"].Replica != "" {
		t.Fatalf("after two reports: %+v", h)
	}
	// a gives up n1 and n2; n2 is b's now and stays b's.
	report(store.ReplicaReport{ID: "a", Started: t0, Now: at(5), Closed: map[string]time.Time{"n1": at(4), "n2": at(3)}})
	h = holders()
	if h["n1"].Replica != "" || !h["n1"].LastSeen.Equal(at(4)) {
		t.Fatalf("n1 after a gave it up: %+v", h["n1"])
	}
	if h["n2"].Replica != "b" || h["n2"].LastSeen.Equal(at(3)) {
		t.Fatalf("n2, taken by b, after a gave it up: %+v", h["n2"])
	}
	// A report with nothing opened or closed still says the replica is alive.
	report(store.ReplicaReport{ID: "b", Started: t0, Now: at(9)})
	if h = holders(); !h["n2"].ReplicaSeen.Equal(at(9)) {
		t.Fatalf("b's liveness after an empty report: %+v", h["n2"])
	}
}
