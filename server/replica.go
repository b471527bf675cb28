package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Several replicas may serve one database, each holding the streams of the agents that chose
// it, while one of them, the leader, sweeps for silent nodes. The leader hears only its own
// agents, so before it calls a node down it asks the store who speaks for the node: a stream
// on another replica that reported within the grace period keeps the node up, and so does a
// last-seen time within it (a replica records one when a stream ends). Every replica sweeps
// its own streams: one silent past the grace period is ended and given up, after which the
// leader judges the node by its last-seen time.

// replicaState is what this replica tells the others at its next report.
type replicaState struct {
	id      string
	started time.Time

	mu     sync.Mutex
	opened map[string]bool
	closed map[string]time.Time
}

func newReplicaState(now time.Time) *replicaState {
	b := make([]byte, 8)
	rand.Read(b)
	return &replicaState{id: hex.EncodeToString(b), started: now, opened: map[string]bool{}, closed: map[string]time.Time{}}
}

// open records that this replica holds the node's stream now.
func (r *replicaState) open(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.closed, node)
	r.opened[node] = true
}

// close records that this replica gave up the node's stream, last hearing from it at seen.
func (r *replicaState) close(node string, seen time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.opened, node)
	r.closed[node] = seen
}

// take returns the report of what changed since the last one, as of now.
func (r *replicaState) take(addr string, now time.Time) store.ReplicaReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := store.ReplicaReport{ID: r.id, Addr: addr, Started: r.started, Now: now, Closed: r.closed}
	for n := range r.opened {
		rep.Opened = append(rep.Opened, n)
	}
	r.opened, r.closed = map[string]bool{}, map[string]time.Time{}
	return rep
}

// putBack returns a report that could not be written to what the next one will say, unless
// something later superseded it.
func (r *replicaState) putBack(rep store.ReplicaReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range rep.Opened {
		if _, later := r.closed[n]; !later {
			r.opened[n] = true
		}
	}
	for n, t := range rep.Closed {
		if !r.opened[n] {
			if _, later := r.closed[n]; !later {
				r.closed[n] = t
			}
		}
	}
}

// report tells the store this replica is alive and which streams it took up and gave up.
func (s *Server) report(ctx context.Context) {
	rep := s.replica.take(s.cfg.Listen, s.clk.Now())
	if err := s.store.ReportReplica(ctx, rep); err != nil {
		s.replica.putBack(rep)
		s.log.Warn("report this replica's streams", "err", err)
	}
}

// gaveUp records that this replica no longer holds the node's stream.
func (s *Server) gaveUp(node string) {
	seen, _ := s.det.LastSeen(node)
	s.replica.close(node, seen)
}

// Sweep judges the nodes silent past the grace period as of now. A replica that leads marks
// down those no other replica speaks for; every replica ends its own streams of silent nodes.
func (s *Server) Sweep(ctx context.Context) {
	now := s.clk.Now()
	silent := s.det.Sweep(now)
	if len(silent) == 0 {
		return
	}
	if !s.leading.Load() {
		for _, name := range silent {
			s.hub.endStream(name, now)
		}
		return
	}
	holders, err := s.store.StreamHolders(ctx, silent)
	if err != nil {
		// Without the store's word no node is called down: try again a moment later.
		s.log.Error("read who holds the silent nodes' streams", "err", err)
		for _, name := range silent {
			s.det.Vouch(name, now.Add(time.Second-s.cfg.HeartbeatGrace))
		}
		return
	}
	for _, name := range silent {
		h := holders[name]
		switch {
		case h.Replica != "" && h.Replica != s.replica.id && now.Sub(h.ReplicaSeen) < s.cfg.HeartbeatGrace:
			s.det.Vouch(name, now)
		case now.Sub(h.LastSeen) < s.cfg.HeartbeatGrace:
			s.det.Vouch(name, h.LastSeen)
		default:
			s.setStatus(ctx, name, api.StatusDown)
		}
	}
}
