package supervise

import "time"

// history is what the restart policy remembers of one process: the restarts it made within
// the window, and whether it is in crashloop.
type history struct {
	restarts  []time.Time
	crashloop bool
}

// afterDeath decides, for a process that died at now after a run that began at started,
// how long to wait before the next try and whether the process is (still) in crashloop. It
// prunes restarts older than the window from h; the caller records the restart itself with
// restarted once it makes it.
func (r Restart) afterDeath(h *history, started, now time.Time) (wait time.Duration, crashloop bool) {
	if !started.IsZero() && now.Sub(started) >= r.Window {
		h.crashloop = false // a run of a whole window ends crashloop, even if unnoticed
	}
	cut := now.Add(-r.Window)
	kept := h.restarts[:0]
	for _, t := range h.restarts {
		if t.After(cut) {
			kept = append(kept, t)
		}
	}
	h.restarts = kept
	n := len(h.restarts)
	switch {
	case h.crashloop || n >= r.Burst:
		h.crashloop = true
		return r.MaxBackoff, true
	case n == 0 || r.Backoff < 0:
		return 0, false
	}
	wait = r.Backoff
	for i := 1; i < n && wait < r.MaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, r.MaxBackoff), false
}

// restarted records a restart made at now. Only the last burst restarts can matter, so no
// more are kept.
func (h *history) restarted(now time.Time, burst int) {
	h.restarts = append(h.restarts, now)
	if over := len(h.restarts) - burst; over > 0 {
		h.restarts = append(h.restarts[:0], h.restarts[over:]...)
	}
}
