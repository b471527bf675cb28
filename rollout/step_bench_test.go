package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// BenchmarkStep10k is one step of the benchmark's rollout (10,000 nodes over 50 sites, 4 waves
// of 2,500, max_parallel 500) in the middle of its second wave, when a batch's 500 nodes have
// just reported the release running: the step marks them done and starts the next 500. The
// engine takes a step like it for each burst of reports, holding the store's writer.
func BenchmarkStep10k(b *testing.B) {
	const nodes, waves, parallel = 10000, 4, 500
	p := Plan{OnFailure: OnFailurePause}
	for w := range waves {
		pw := PlanWave{Name: fmt.Sprintf("w%d", w+1), MaxParallel: parallel, FailureThreshold: 125, HealthyDeadline: 5 * time.Minute}
		for i := range nodes / waves {
			n := w*nodes/waves + i
			pw.Nodes = append(pw.Nodes, PlanNode{Name: fmt.Sprintf("node-%05d", n), Site: fmt.Sprintf("site-%02d", n%50), From: "1.0.0"})
		}
		p.Waves = append(p.Waves, pw)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	pr := Begin(p)
	pr.Wave = 1
	pr.Waves[0] = WaveProgress{State: WaveDone, Started: now.Add(-time.Minute), Healthy: now.Add(-30 * time.Second)}
	pr.Waves[1] = WaveProgress{State: WaveRunning, Started: now.Add(-10 * time.Second)}
	obs := map[string]Observed{}
	for w, pw := range p.Waves {
		for i, n := range pw.Nodes {
			o := Observed{Up: true, Version: "1.0.0", State: api.AppStateRunning}
			switch {
			case w == 0, w == 1 && i < 1000:
				pr.Nodes[n.Name] = NodeProgress{Wave: w, State: NodeDone, Since: now.Add(-time.Second), Moved: true}
				o.Version = "2.0.0"
			case w == 1 && i < 1500: // the batch that just finished
				pr.Nodes[n.Name] = NodeProgress{Wave: w, State: NodeMoving, Since: now.Add(-2 * time.Second), Moved: true}
				o.Version = "2.0.0"
			}
			obs[n.Name] = o
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		res := Step(p, "2.0.0", pr, obs, now)
		if len(res.Actions) != 1 || len(res.Actions[0].Nodes) != parallel {
			b.Fatalf("actions %d, want one assigning %d", len(res.Actions), parallel)
		}
	}
}
