package main

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/client"
)

// vagent is a virtual agent: it holds a stream as `ferry agent` does and answers a new
// assignment of the app as a real agent's report would, on the real clock: installing at once,
// verifying after half the install time, then, after the whole of it, running the new release
// (or, for a failing agent, rolled_back with the release pending).
type vagent struct {
	fleet.Identity
	site    string
	fails   bool // gives up on every release after its first
	offline bool // leaves before the rollout, so the server marks it down

	stop context.CancelFunc
	st   *client.Stream

	mu       sync.Mutex
	gen      int64
	report   api.NodeApp    // what it says of the app
	working  api.Assignment // the assignment it works on, or finished
	installs int
	// assigned is when it got the rollout's release; reported when it said it ran it.
	assigned, reported time.Time
}

// fleetRun is what every virtual agent shares: the app, the install time, and where the
// rollout's release is told apart from the first one.
type fleetRun struct {
	app      string
	install  time.Duration
	interval time.Duration
	rollout  string       // the version the rollout moves to
	lost     atomic.Int64 // streams that broke and were opened again
}

// connect opens the agent's stream and runs it (heartbeats, desired states) until stop: a
// stream that breaks is opened again after a second, with a new session when the server wants
// one, and the agent reports its apps again, as `ferry agent` does. It returns once the first
// stream has had its first answer.
func (a *vagent) connect(ctx context.Context, c *client.Client, f *fleetRun, opening chan struct{}) error {
	ctx, a.stop = context.WithCancel(ctx)
	first := make(chan error, 1)
	var answered atomic.Bool
	go func() {
		for n := 0; ctx.Err() == nil; n++ {
			if n > 0 {
				f.lost.Add(1)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			err := a.stream(ctx, c, f, opening, func() {
				if !answered.Swap(true) {
					first <- nil
				}
			})
			if !answered.Load() {
				first <- err
				return
			}
			if code := client.StatusOf(err); code == http.StatusUnauthorized || code == http.StatusForbidden {
				a.Renew(ctx, c)
			}
		}
	}()
	return <-first
}

// stream runs one stream until it breaks, calling answered at each answer.
func (a *vagent) stream(ctx context.Context, c *client.Client, f *fleetRun, opening chan struct{}, answered func()) error {
	opening <- struct{}{}
	st, err := c.OpenStream(ctx, a.Session)
	<-opening
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(sctx, func() { st.Close() })
	a.mu.Lock()
	a.st = st
	// A new session reports its apps, as an agent does.
	apps := []api.NodeApp{}
	if a.report.App != "" {
		apps = append(apps, a.report)
	}
	err = st.Send(api.Sync{Generation: a.gen, Apps: &apps})
	a.mu.Unlock()
	if err != nil {
		return err
	}
	go func() {
		tick := time.NewTicker(f.interval)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			a.mu.Lock()
			err := st.Send(api.Sync{Generation: a.gen, Sparse: true})
			a.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		answered()
		if r.Desired != nil {
			a.desired(f, *r.Desired)
		}
	}
}

// desired takes in a desired state: a new assignment of the app starts an install.
func (a *vagent) desired(f *fleetRun, d api.Desired) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen = d.Generation
	for _, as := range d.Apps {
		if as.App != f.app || as == a.working || as.Version == a.report.Version && as.SHA256 == a.report.SHA256 {
			continue
		}
		a.working = as
		if as.Version == f.rollout {
			a.assigned = time.Now()
		}
		a.report.App, a.report.Pending, a.report.Attempt = f.app, as.Version, as.Attempt
		a.report.State, a.report.Error = api.AppStateInstalling, ""
		a.send()
		time.AfterFunc(f.install/2, func() { a.verifying(as) })
		time.AfterFunc(f.install, func() { a.finish(f, as) })
	}
}

func (a *vagent) verifying(as api.Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.working == as {
		a.report.State = api.AppStateVerifying
		a.send()
	}
}

// finish ends the install of as: the release runs, or a failing agent goes back to the one
// before and says why.
func (a *vagent) finish(f *fleetRun, as api.Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.working != as {
		return
	}
	if a.fails && a.installs > 0 {
		a.report.State, a.report.Error = api.AppStateRolledBack, "simulated: the release failed its health check"
	} else {
		now := time.Now()
		a.report = api.NodeApp{App: f.app, Version: as.Version, SHA256: as.SHA256, InstalledAt: &now, State: api.AppStateRunning}
		a.installs++
	}
	if as.Version == f.rollout {
		a.reported = time.Now()
	}
	a.send()
}

// send reports the app (a.mu held).
func (a *vagent) send() {
	if a.st != nil {
		a.st.Send(api.Sync{Generation: a.gen, Apps: &[]api.NodeApp{a.report}})
	}
}
