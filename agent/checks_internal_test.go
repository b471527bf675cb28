package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/check"
	"github.com/ferryhq/ferry/clock"
)

// bareAgent is an agent with what running checks needs and nothing else: no server, no apps.
func bareAgent(t *testing.T, clk clock.Clock) *Agent {
	return &Agent{cfg: Config{DataDir: t.TempDir(), Name: "n1"}, clk: clk, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		checks: check.NewRunner(clk), runs: map[string]*appRun{}, changed: make(chan struct{}), reported: make(chan struct{}),
		poke: make(chan struct{}, 1)}
}

// collect waits until the agent has queued n results since the last collect, and returns them:
// it looks again at each poke, which an urgent result sends.
func collect(t *testing.T, a *Agent, n int) []api.CheckResult {
	t.Helper()
	var got []api.CheckResult
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		a.mu.Lock()
		for rs := a.checkQueue.take(); rs != nil; rs = a.checkQueue.take() {
			got = append(got, rs...)
		}
		a.mu.Unlock()
		if len(got) >= n {
			if len(got) > n {
				t.Fatalf("got %d results, want %d: %+v", len(got), n, got)
			}
			return got
		}
		select {
		case <-a.poke:
		case <-deadline.C:
			t.Fatalf("got %d results, want %d: %+v", len(got), n, got)
		}
	}
}

// byCheck indexes results by check name; each check must have given one.
func byCheck(t *testing.T, rs []api.CheckResult) map[string]api.CheckResult {
	t.Helper()
	m := map[string]api.CheckResult{}
	for _, r := range rs {
		if _, dup := m[r.Check]; dup {
			t.Fatalf("two results of %s: %+v", r.Check, rs)
		}
		m[r.Check] = r
	}
	return m
}

// The operator's checks from the desired state run on their intervals, with Nagios's soft and
// hard states; results that change the state are urgent (poke the stream), the others wait.
// A changed check starts afresh, a removed one stops. Real plugins: a script, Debian's
// check_load found by its bare name, and the disk check.
func TestOperatorChecks(t *testing.T) {
	debianPlugin(t, "check_load")
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	a := bareAgent(t, clk)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.WriteFile(state, []byte("0"), 0o644)
	probe := filepath.Join(dir, "probe")
	os.WriteFile(probe, []byte(fmt.Sprintf("#!/bin/sh\ncode=$(cat %s)\necho \"PROBE $FERRY_NODE $1 $code | n=$code;1;2;0;3 gone=U\"\nexit $code\n", state)), 0o755)
	probeSpec := api.CheckSpec{Name: "probe", Exec: []string{probe, "${FERRY_PORT_HTTP}"}, Interval: api.Duration(10 * time.Second),
		RetryInterval: api.Duration(5 * time.Second), Retries: 2}
	d := api.Desired{Generation: 1, Checks: []api.CheckSpec{
		probeSpec,
		{Name: "load", Exec: []string{"check_load", "-w", "1000,1000,1000", "-c", "2000,2000,2000"}},
		{Name: "disk", Disk: dir, Warn: "0%", Crit: "0B", Interval: api.Duration(time.Hour)},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := a.newCheckSet(ctx)
	defer cs.sync(nil)
	cs.sync(a.wantedChecks(d))

	// The first results are urgent: they poke the stream.
	first := byCheck(t, collect(t, a, 3))
	if p := first["probe"]; p.State != api.CheckOK || !p.Hard || p.Attempt != 1 || p.App != "" ||
		p.Output != "PROBE n1 ${FERRY_PORT_HTTP} 0" || len(p.Perf) != 1 || p.Perf[0].Label != "n" || p.Perf[0].Warn != "1" ||
		p.Perf[0].Crit != "2" || *p.Perf[0].Max != 3 || !p.Time.Equal(clk.Now()) {
		t.Fatalf("probe: %+v", p)
	}
	if l := first["load"]; l.State != api.CheckOK || !strings.HasPrefix(l.Output, "LOAD OK") || len(l.Perf) != 3 {
		t.Fatalf("load: %+v", l)
	}
	if dk := first["disk"]; dk.State != api.CheckOK || !strings.HasPrefix(dk.Output, "DISK OK - free space: "+dir) || len(dk.Perf) != 1 || dk.Perf[0].UOM != "B" {
		t.Fatalf("disk: %+v", dk)
	}

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	// advance moves the clock on by d, when the probe waits for a run due within d, and waits
	// until it waits again.
	advance := func(d time.Duration) {
		t.Helper()
		if err := clk.WaitDue(wctx, d); err != nil {
			t.Fatal(err)
		}
		clk.Advance(d)
		if err := clk.WaitDue(wctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// An OK again is routine: it waits for the heartbeat, poking nothing. (Once the three
	// checks wait for their next runs, the first results' pokes are all in.)
	if err := clk.WaitPending(wctx, 3); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.poke:
	default:
	}
	advance(10 * time.Second)
	select {
	case <-a.poke:
		t.Fatal("a routine result poked the stream")
	default:
	}
	if rs := collect(t, a, 1); rs[0].Check != "probe" || rs[0].State != api.CheckOK {
		t.Fatalf("routine: %+v", rs)
	}

	// A problem is soft first, retried at the retry interval, then hard.
	os.WriteFile(state, []byte("2"), 0o644)
	advance(10 * time.Second)
	if rs := collect(t, a, 1); rs[0].State != api.CheckCritical || rs[0].Hard || rs[0].Attempt != 1 || rs[0].Output != "PROBE n1 ${FERRY_PORT_HTTP} 2" {
		t.Fatalf("soft: %+v", rs)
	}
	advance(5 * time.Second)
	if rs := collect(t, a, 1); rs[0].State != api.CheckCritical || !rs[0].Hard || rs[0].Attempt != 2 {
		t.Fatalf("hard: %+v", rs)
	}

	// A changed check starts afresh (soft again), a removed one stops.
	probeSpec.Interval = api.Duration(20 * time.Second)
	d.Checks[0] = probeSpec
	cs.sync(a.wantedChecks(d))
	if rs := collect(t, a, 1); rs[0].Check != "probe" || rs[0].State != api.CheckCritical || rs[0].Hard || rs[0].Attempt != 1 {
		t.Fatalf("changed: %+v", rs)
	}
	d.Checks = d.Checks[1:]
	cs.sync(a.wantedChecks(d))
	if len(cs.runs) != 2 || cs.runs["probe"] != nil {
		t.Fatalf("running %v after the probe was removed", cs.runs)
	}
	clk.Advance(time.Minute) // the load check's turn; the probe's would have come too
	if err := clk.WaitDue(wctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if rs := collect(t, a, 1); rs[0].Check != "load" {
		t.Fatalf("after removal: %+v", rs)
	}
}

// debianPlugin returns the path of one of Debian's monitoring plugins, or skips the test saying
// how to get them.
func debianPlugin(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(pluginDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed: apt-get install monitoring-plugins-basic (make test does)", p)
	}
	return p
}

// However many checks are due at once, an agent runs at most maxRunningChecks of them; the
// others wait for a slot.
func TestChecksRunFewAtOnce(t *testing.T) {
	var mu sync.Mutex
	inflight, most, seen := 0, 0, map[string]bool{}
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		most = max(most, inflight)
		seen[r.URL.Path] = true
		mu.Unlock()
		arrived <- struct{}{}
		<-release
		mu.Lock()
		inflight--
		mu.Unlock()
	}))
	defer srv.Close()
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	a := bareAgent(t, clk)
	var d api.Desired
	for i := range maxRunningChecks + 2 {
		d.Checks = append(d.Checks, api.CheckSpec{Name: fmt.Sprint("c", i), HTTP: fmt.Sprintf("%s/%d", srv.URL, i), Timeout: api.Duration(time.Minute)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := a.newCheckSet(ctx)
	defer cs.sync(nil)
	cs.sync(a.wantedChecks(d))
	for range maxRunningChecks {
		<-arrived
	}
	close(release)
	rs := collect(t, a, len(d.Checks))
	mu.Lock()
	defer mu.Unlock()
	if most != maxRunningChecks || len(seen) != len(d.Checks) || len(byCheck(t, rs)) != len(d.Checks) {
		t.Fatalf("%d checks ran at once, %d of %d were asked", most, len(seen), len(d.Checks))
	}
}

// A result keeps within the contract's bounds: the output cut to api.MaxCheckOutput bytes of
// printable text, at most api.MaxCheckPerf perfdata items, none that could not be measured.
func TestCheckResultBounds(t *testing.T) {
	long := strings.Repeat("é", api.MaxCheckOutput) // two bytes each
	var perf []check.Perf
	perf = append(perf, check.Perf{Label: "gone", Unknown: true})
	for i := range api.MaxCheckPerf + 5 {
		w := check.Range{End: 10}
		perf = append(perf, check.Perf{Label: fmt.Sprint("p", i), Value: float64(i), UOM: "ms", Warn: &w})
	}
	res := check.Result{State: check.Warning, Output: "bad\x1b[31m " + long, Perf: perf, Time: time.Unix(100, 0), Duration: time.Second}
	r := checkResult(nodeCheck{name: "web/http", app: "web"}, res, check.Status{State: check.Warning, Attempt: 2})
	if len(r.Output) > api.MaxCheckOutput || !strings.HasPrefix(r.Output, "bad [31m éé") || strings.ContainsRune(r.Output, '\uFFFD') {
		t.Fatalf("output %d bytes: %q…", len(r.Output), r.Output[:20])
	}
	if len(r.Perf) != api.MaxCheckPerf || r.Perf[0].Label != "p0" || r.Perf[0].Warn != "10" || r.Perf[0].UOM != "ms" {
		t.Fatalf("perf: %+v", r.Perf[:2])
	}
	if r.Check != "web/http" || r.App != "web" || r.State != api.CheckWarning || r.Hard || r.Attempt != 2 || r.Duration != api.Duration(time.Second) {
		t.Fatalf("%+v", r)
	}
}

// The queue keeps the newest result of each check when it overflows, and a frame takes the
// oldest first, within its bounds.
func TestCheckQueue(t *testing.T) {
	var q checkQueue
	res := func(check string, i int) api.CheckResult {
		return api.CheckResult{Check: check, State: api.CheckOK, Output: fmt.Sprint(i), Time: time.Unix(int64(i), 0)}
	}
	// One lonely result of "rare", then many of "busy": overflow drops busy's oldest, never
	// rare's only result.
	q.push(res("rare", 0), true)
	for i := 1; i <= maxQueuedResults+10; i++ {
		q.push(res("busy", i), false)
	}
	if len(q.items) != maxQueuedResults || q.items[0].r.Check != "rare" || q.items[1].r.Output != "12" || !q.urgent() {
		t.Fatalf("%d queued, first %+v, second %+v", len(q.items), q.items[0].r, q.items[1].r)
	}
	// A full queue of checks with one result each: the oldest goes.
	var full checkQueue
	for i := range maxQueuedResults + 1 {
		full.push(res(fmt.Sprint("c", i), i), false)
	}
	if len(full.items) != maxQueuedResults || full.items[0].r.Check != "c1" {
		t.Fatalf("full: %d, first %+v", len(full.items), full.items[0].r)
	}
	// Frames take the oldest first, at most api.MaxCheckResults.
	first := q.take()
	if len(first) != api.MaxCheckResults || first[0].Check != "rare" || first[1].Output != "12" || q.urgent() {
		t.Fatalf("first frame: %d results from %+v", len(first), first[0])
	}
	// And at most maxFrameCheckBytes: big results go a few at a time, one at least.
	var big checkQueue
	huge := strings.Repeat("x", maxFrameCheckBytes/3)
	for i := range 4 {
		r := res("big", i)
		r.Output = huge
		big.push(r, false)
	}
	if n := len(big.take()); n != 2 {
		t.Fatalf("a frame took %d big results, want 2", n)
	}
	// What a broken stream did not carry goes back to the front.
	big.putBack(first[:2])
	if got := big.take(); len(got) != 4 || got[0].Check != "rare" || got[3].Check != "big" || big.take() != nil {
		t.Fatalf("after putBack: %d results, first %+v", len(got), got[0])
	}
}

// Routine results wait for a heartbeat until the oldest has waited checkBatch, or there are
// batchResults of them; an urgent one makes the next frame carry them all.
func TestCheckQueueDue(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var q checkQueue
	if q.due(t0.Add(time.Hour)) {
		t.Fatal("an empty queue is due")
	}
	q.push(api.CheckResult{Check: "a", State: api.CheckOK, Time: t0}, false)
	if q.due(t0.Add(checkBatch - time.Second)) {
		t.Fatal("a routine result is due before it waited checkBatch")
	}
	if !q.due(t0.Add(checkBatch)) {
		t.Fatal("a routine result that waited checkBatch is not due")
	}
	for i := 1; i < batchResults; i++ {
		q.push(api.CheckResult{Check: fmt.Sprint("c", i), State: api.CheckOK, Time: t0}, false)
	}
	if !q.due(t0) {
		t.Fatalf("%d routine results are not due", batchResults)
	}
	q.take()
	q.push(api.CheckResult{Check: "a", State: api.CheckCritical, Time: t0}, true)
	if !q.due(t0) {
		t.Fatal("an urgent result is not due")
	}
}
