package agent

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// stream holds the agent's protocol-2 stream for the life of a session: a heartbeat frame every
// interval, the app report as soon as it changes, check results (with the heartbeat, or at once
// when a check's state changed), and the desired state whenever the server pushes it. It calls answered at the first answer. It returns nil when the session is about to
// expire (the caller opens a new one) or ctx ends, and an error when the stream breaks or the
// server stops answering; the caller then opens another stream on the same session.
func (a *Agent) stream(ctx context.Context, sess api.Session, fresh bool, answered func()) error {
	st, err := a.api.OpenStream(ctx, sess.Token)
	if err != nil {
		return err
	}
	defer st.Close()
	// Once an hour with each new session, and after every failover: which server it is on.
	a.log.Info("streaming", "server", a.api.Addr())
	replies := make(chan api.SyncReply)
	broken := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				broken <- err
				return
			}
			select {
			case replies <- r:
			case <-done:
				return
			}
		}
	}()

	// The first frame of a stream carries the whole report, and that of a new session the facts
	// too: a report sent on a stream that broke may never have arrived.
	send := func(first, beat bool) error {
		select {
		case <-a.poke: // this frame carries the report that poke announced
		default:
		}
		a.mu.Lock()
		req := api.Sync{Generation: a.desired.Generation, Sparse: true}
		sent := a.reportVer
		if a.reportDirty || first {
			r := append([]api.NodeApp{}, a.report...)
			req.Apps = &r
		}
		// Routine results wait for a heartbeat once the oldest has waited checkBatch: a frame
		// that carries results is answered, and the frame, not the result, is most of what
		// the server spends. Any other frame takes them along.
		if !beat || a.checkQueue.due(a.clk.Now()) {
			req.Checks = a.checkQueue.take()
		}
		// A frame with check results asks for an answer, which tells the agent the server is
		// there to take them; only a frame that carries nothing may go unanswered.
		req.Sparse = len(req.Checks) == 0
		more := a.checkQueue.urgent()
		a.mu.Unlock()
		withFacts := first && fresh
		if withFacts {
			f := gatherFacts(a.cfg.DataDir)
			req.Facts = &f
		}
		if err := st.Send(req); err != nil {
			a.mu.Lock()
			a.checkQueue.putBack(req.Checks)
			a.mu.Unlock()
			return err
		}
		if a.cfg.Frames != nil {
			a.cfg.Frames(req)
		}
		if more {
			a.pokeStream() // urgent results past this frame's bounds: another frame at once
		}
		if req.Apps != nil {
			a.mu.Lock()
			if a.reportVer == sent {
				a.reportDirty = false
			}
			a.mu.Unlock()
		}
		return nil
	}
	if err := send(true, false); err != nil {
		return err
	}
	first := true
	interval := 10 * time.Second // until the server says
	unanswered := a.clk.Now()    // when the oldest unanswered frame went out; zero when none
	hb := a.clk.NewTimer(interval)
	renew := a.clk.NewTimer(sess.ExpiresAt.Add(-time.Minute).Sub(a.clk.Now()))
	defer func() { hb.Stop(); renew.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-broken:
			return err
		case <-renew.C():
			return nil
		case r := <-replies:
			if first {
				first = false
				answered()
			}
			if fresh {
				fresh = false
				a.mu.Lock()
				a.freshSession = false
				a.mu.Unlock()
			}
			unanswered = time.Time{}
			if r.Logs != nil {
				go a.serveLogs(ctx, *r.Logs)
			}
			if r.Probe != nil {
				go a.serveProbe(ctx, *r.Probe)
			}
			if r.Desired != nil {
				a.apply(*r.Desired)
			}
			if d := time.Duration(r.HeartbeatInterval); d > 0 && d != interval {
				interval = d
				hb = restart(a.clk, hb, interval)
			}
		case <-a.poke:
			if err := send(false, false); err != nil {
				return err
			}
		case <-hb.C():
			if !unanswered.IsZero() && a.clk.Now().Sub(unanswered) > api.SparseSilent*interval {
				return errors.New("the server stopped answering on the stream")
			}
			if err := send(false, true); err != nil {
				return err
			}
			if unanswered.IsZero() {
				unanswered = a.clk.Now()
			}
			hb = a.clk.NewTimer(interval)
		}
	}
}

// restart replaces a timer with one for d.
func restart(clk clock.Clock, t clock.Timer, d time.Duration) clock.Timer {
	t.Stop()
	return clk.NewTimer(d)
}
