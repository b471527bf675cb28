package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// sentFrame is a frame an agent sent, and when by its clock.
type sentFrame struct {
	sync api.Sync
	at   time.Time
}

// A running app's manifest checks run on their interval once its release is verified, named
// APP/NAME, with Nagios's soft and hard states (three retries). A result that changes the
// state or its hardness reaches the server at once, in a frame of its own, taking along the
// routine results before it; routine results otherwise ride on the next heartbeat. A stopped
// app's checks stop, and start afresh with it.
func TestManifestChecksReachTheServer(t *testing.T) {
	r := startRig(t, false, 10*time.Minute)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	killServices(t, dir)
	logs := &lockedBuf{}
	frames := make(chan sentFrame, 1024)
	n := r.start("n1", dir, agent.Config{Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Frames: func(s api.Sync) { frames <- sentFrame{s, clk.Now()} }})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})

	state := filepath.Join(t.TempDir(), "state")
	os.WriteFile(state, []byte("0"), 0o644)
	probe := fmt.Sprintf("#!/bin/sh\ncode=$(cat %s)\necho \"PROBE $FERRY_APP $code | n=$code;1;2;0;3\"\nexit $code\n", state)
	r.pushManifest("1.0.0", `processes:
  - name: web
    command: [sh, -c, "exec sleep 100000"]
update: {min_healthy_time: 0s}
checks:
  - {name: probe, exec: [bin/probe], interval: 4s, timeout: 5s}
`, map[string]string{"bin/probe": probe})
	r.deploy("hello@1.0.0", "site=ams")
	n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0"))

	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	// nextProbe returns the next frame that carries results of hello/probe, and them.
	nextProbe := func() ([]api.CheckResult, sentFrame) {
		t.Helper()
		for {
			select {
			case f := <-frames:
				var rs []api.CheckResult
				for _, c := range f.sync.Checks {
					if c.Check == "hello/probe" {
						rs = append(rs, c)
					}
				}
				if len(rs) > 0 {
					return rs, f
				}
			case <-ctx.Done():
				t.Fatal("no frame with the probe's results")
			}
		}
	}
	// advance moves the clock on by d and waits for the probe's next result: a run starts an
	// interval after the last one started, whether the probe waits for it yet or not.
	runs := 1
	logs.waitCount(t, `msg="check result" node=n1 check=hello/probe`, runs)
	advance := func(d time.Duration) {
		t.Helper()
		clk.Advance(d)
		runs++
		logs.waitCount(t, `msg="check result" node=n1 check=hello/probe`, runs)
	}
	type want struct {
		state   string
		hard    bool
		attempt int
	}
	expect := func(rs []api.CheckResult, ws ...want) {
		t.Helper()
		if len(rs) != len(ws) {
			t.Fatalf("%d results, want %d: %+v", len(rs), len(ws), rs)
		}
		for i, w := range ws {
			if c := rs[i]; c.State != w.state || c.Hard != w.hard || c.Attempt != w.attempt || c.App != "hello" {
				t.Fatalf("result %d: %+v, want %+v", i, c, w)
			}
		}
	}
	ok := want{api.CheckOK, true, 1}

	rs, _ := nextProbe()
	expect(rs, ok)
	if p := rs[0]; p.Output != "PROBE hello 0" || len(p.Perf) != 1 || p.Perf[0].Label != "n" || p.Perf[0].Value != 0 ||
		p.Perf[0].Warn != "1" || p.Perf[0].Crit != "2" || p.Perf[0].Min == nil || *p.Perf[0].Max != 3 {
		t.Fatalf("first result: %+v", p)
	}

	// Two routine results wait; the soft problem after them goes at once and takes them along.
	advance(4 * time.Second)
	advance(4 * time.Second)
	os.WriteFile(state, []byte("2"), 0o644)
	advance(4 * time.Second)
	rs, f := nextProbe()
	expect(rs, ok, ok, want{api.CheckCritical, false, 1})
	if !f.at.Equal(rs[2].Time) || rs[2].Output != "PROBE hello 2" {
		t.Fatalf("the soft problem of %v was sent at %v: %+v", rs[2].Time, f.at, rs[2])
	}
	// Retried every second (a quarter of the interval): the third problem in a row is hard.
	advance(time.Second)
	advance(time.Second)
	rs, _ = nextProbe()
	expect(rs, want{api.CheckCritical, false, 2}, want{api.CheckCritical, true, 3})

	// A hard problem that holds is routine again: it rides on the next heartbeat.
	advance(4 * time.Second)
	held := clk.Now()
	advance(10 * time.Minute)
	rs, f = nextProbe()
	if c := rs[0]; !c.Time.Equal(held) || c.State != api.CheckCritical || !c.Hard || f.at.Before(held.Add(5*time.Minute)) {
		t.Fatalf("the heartbeat at %v carried %+v; want the result of %v first", f.at, rs, held)
	}

	// Stopped, the app's checks stop; started, they start afresh (soft again).
	control := func(action string, started, stopped int) {
		t.Helper()
		if res, err := r.admin.ControlApp(r.ctx, api.AppControl{App: "hello", Action: action, Nodes: []string{"n1"}}); err != nil || len(res.Nodes) != 1 {
			t.Fatalf("%s: %+v %v", action, res, err)
		}
		logs.waitCount(t, `msg="check started" node=n1 check=hello/probe`, started)
		logs.waitCount(t, `msg="check stopped" node=n1 check=hello/probe`, stopped)
	}
	control(api.AppStop, 1, 1)
	stopped := clk.Now()
	clk.Advance(4 * time.Second)
	clk.Advance(4 * time.Second)
	control(api.AppStart, 2, 1)
	runs++
	logs.waitCount(t, `msg="check result" node=n1 check=hello/probe`, runs)
	for {
		rs, _ = nextProbe()
		last := rs[len(rs)-1]
		for _, c := range rs[:len(rs)-1] {
			if c.Time.After(stopped) {
				t.Fatalf("a result of %v, while the app was stopped at %v: %+v", c.Time, stopped, rs)
			}
		}
		if last.Time.After(stopped) {
			expect(rs[len(rs)-1:], want{api.CheckCritical, false, 1})
			break
		}
	}

	// Undeployed, the app's checks stop for good.
	if res, err := r.admin.Undeploy(r.ctx, api.Undeploy{App: "hello", Selector: "site=ams"}); err != nil || len(res.Nodes) != 1 {
		t.Fatalf("undeploy: %+v %v", res, err)
	}
	logs.waitCount(t, `msg="check stopped" node=n1 check=hello/probe`, 2)
}
