package server

import (
	"context"
	"sync"

	"github.com/ferryhq/ferry/api"
)

// returns holds the nodes heard again after they were judged down whose return is still to be
// written to the store. The stream that hears a node come back marks it up in the detector at
// once (its frames are handled as any live node's from then on) and leaves the store write to
// returnLoop, so a frame worker never waits on the store's writer: when the store is busy and
// many nodes come back at once, workers that waited for their status writes would leave the
// poller with nowhere to hand the next frames, heartbeats would go unread, and more nodes would
// be judged down — each to come back through the same wait.
type returns struct {
	mu      sync.Mutex
	pending map[string]context.Context // node → the context (its actor) its return is written under
	wake    chan struct{}
}

func newReturns() *returns {
	return &returns{pending: map[string]context.Context{}, wake: make(chan struct{}, 1)}
}

// add queues node's return, to be written under ctx's actor.
func (r *returns) add(ctx context.Context, node string) {
	r.mu.Lock()
	r.pending[node] = ctx
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (r *returns) take() map[string]context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = map[string]context.Context{}
	return p
}

// nodeBack records that node speaks again: the detector already counts it up; the store learns
// of it from returnLoop.
func (s *Server) nodeBack(ctx context.Context, node string) { s.returns.add(ctx, node) }

// returnLoop writes the queued returns until ctx ends. setStatus writes only what the detector
// still says, so a node judged down again before its turn stays down.
func (s *Server) returnLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.returns.wake:
		}
		for node, nctx := range s.returns.take() {
			if ctx.Err() != nil {
				return
			}
			s.setStatus(nctx, node, api.StatusUp)
		}
	}
}
