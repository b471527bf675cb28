package health

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/internal/backend"
)

// BenchmarkIngest is the server's cost of check results at 10,000 nodes × 5 checks every 30s:
// one op is one agent frame of five results whose state holds (their output and perf move), and
// every 3,333 frames (one 10s heartbeat interval of that fleet, on the fake clock) Flush writes
// what is due to SQLite, as the server does. A first pass over the fleet, untimed, fills memory
// and the store.
func BenchmarkIngest(b *testing.B) {
	const nodes, checks, perFlush = 10000, 5, 3333
	st := backend.SQLite(b)
	clk := clock.NewFake(t0)
	s := New(Config{Store: st, Clock: clk})
	ctx := context.Background()
	names := make([]string, nodes)
	for i := range names {
		names[i] = "node-" + strconv.Itoa(i)
	}
	frame := make([]api.CheckResult, checks)
	for i := range frame {
		frame[i] = api.CheckResult{Check: "check-" + strconv.Itoa(i), State: api.CheckOK, Hard: true,
			Perf: []api.CheckPerf{{Label: "load1"}, {Label: "load5"}, {Label: "load15"}}}
	}
	ingest := func(i int) {
		for j := range frame {
			frame[j].Time = clk.Now()
			frame[j].Output = "OK - load average: 0." + strconv.Itoa(i%100)
			frame[j].Perf[0].Value = float64(i % 100)
		}
		if err := s.Ingest(ctx, names[i%nodes], frame); err != nil {
			b.Fatal(err)
		}
		if i%perFlush == perFlush-1 {
			clk.Advance(10 * time.Second)
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range nodes {
		ingest(i)
	}
	b.ResetTimer()
	for i := range b.N {
		ingest(nodes + i)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*checks), "ns/result")
}
