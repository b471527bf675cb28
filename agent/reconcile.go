package agent

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// reconcile installs the assigned releases whenever the desired state changes, and retries
// failures that may mend (the server away, a download that brought nothing) with backoff on the
// clock, or at once when the server answers again after an outage. A download cut off after
// bytes came does not wait: the installer resumes it at once.
func (a *Agent) reconcile(ctx context.Context) {
	select {
	case <-a.online:
	case <-ctx.Done():
		return
	}
	bo := backoff{clk: a.clk, min: time.Second, max: 5 * time.Minute}
	var fetched int64 // blob bytes the installer had downloaded at the last retry
	for {
		d, changed := a.Desired()
		retry := a.converge(ctx, d)
		var t clock.Timer
		var wait <-chan time.Time
		if retry {
			// The wait grows over tries that got nowhere; one that brought bytes before it
			// failed starts it over.
			if n := a.inst.fetched.Load(); n != fetched {
				fetched = n
				bo.reset()
			}
			t = a.clk.NewTimer(bo.next())
			wait = t.C()
		} else {
			bo.reset()
		}
		var back <-chan struct{}
		if retry {
			back = a.reconnected
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-wait:
		case <-back:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// converge brings each assigned app to its release and reports the outcome; it returns true
// when an install failed in a way worth retrying.
func (a *Agent) converge(ctx context.Context, d api.Desired) (retry bool) {
	for _, as := range d.Apps {
		if cur, ok := a.inst.current(as.App); ok && cur.Version == as.Version && cur.SHA256 == as.SHA256 {
			delete(a.failed, as.App)
			continue
		}
		if as.Withdrawn != "" {
			continue // observe reports why it is not installed
		}
		if f, ok := a.failed[as.App]; ok && f.final && f.assignment == as {
			continue
		}
		a.log.Info("installing", "app", as.App, "version", as.Version)
		cur, err := a.inst.install(ctx, as)
		if ctx.Err() != nil {
			return false
		}
		var perm permanentError
		switch {
		case err == nil:
			delete(a.failed, as.App)
			a.log.Info("installed", "app", cur.App, "version", cur.Version, "sha256", cur.SHA256)
		case errors.As(err, &perm):
			a.failed[as.App] = failure{assignment: as, err: reportable(err.Error()), final: true}
			a.log.Error("install refused", "app", as.App, "version", as.Version, "err", err)
		default:
			a.failed[as.App] = failure{assignment: as, err: reportable(err.Error())}
			a.log.Warn("install failed; will retry", "app", as.App, "version", as.Version, "err", err)
			retry = true
		}
		a.setReport(a.observe(d))
	}
	a.setReport(a.observe(d))
	return retry
}

// observe builds the app report: every installed app and, for each assigned release that is
// not installed, which one and why not.
func (a *Agent) observe(d api.Desired) []api.NodeApp {
	apps := map[string]api.NodeApp{}
	for name, cur := range a.inst.all() {
		t := cur.InstalledAt
		apps[name] = api.NodeApp{App: name, Version: cur.Version, SHA256: cur.SHA256, InstalledAt: &t}
	}
	for _, as := range d.Apps {
		na := apps[as.App]
		na.App = as.App
		if na.Version == as.Version && na.SHA256 == as.SHA256 {
			continue
		}
		na.Pending = as.Version
		switch f, failed := a.failed[as.App]; {
		case as.Withdrawn != "":
			na.Error = reportable("release withdrawn (" + as.Withdrawn + "); not installing it")
		case failed && f.assignment == as:
			na.Error, na.Retry = f.err, !f.final
		}
		apps[as.App] = na
	}
	out := make([]api.NodeApp, 0, len(apps))
	for _, na := range apps {
		out = append(out, na)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// setReport records a new app report and, when it differs from the last, has the next sync
// carry it at once.
func (a *Agent) setReport(apps []api.NodeApp) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if reflect.DeepEqual(apps, a.report) {
		return
	}
	a.report = apps
	a.reportVer++
	a.reportDirty = true
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// Apps returns the agent's latest app report.
func (a *Agent) Apps() []api.NodeApp {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]api.NodeApp{}, a.report...)
}

// maxReportedError bounds an error message in the app report, as the server does.
const maxReportedError = 1000

// reportable makes an error message fit the app report the server accepts: printable text
// (control and bidi characters become spaces, invalid UTF-8 a replacement character), at most
// maxReportedError bytes.
func reportable(msg string) string {
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "\uFFFD"))
	for len(msg) > maxReportedError {
		_, size := utf8.DecodeLastRuneInString(msg)
		msg = msg[:len(msg)-size]
	}
	return msg
}
