package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// An agent whose stream is not open when its order comes gets it once its stream opens: n2
// (the listener) and n1 (the side that connects) each come back only after the event that
// gives them their order has passed the replicas, and the pair is measured all the same,
// whether they come back to the replica they left or to another over the same store.
func TestProbeOrderWaitsForTheStream(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("other replica %v", other), func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
			st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "ferry.db"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{HeartbeatInterval: time.Hour, HeartbeatGrace: 3 * time.Hour, Clock: clk,
				Store: st, ClusterKey: filepath.Join(t.TempDir(), "cluster.key")}
			h := start(t, cfg)
			back := h
			if other {
				cfg.Store = follower{st}
				back = start(t, cfg)
			}
			probeAfterStreams(t, h, back)
		})
	}
}

// probeAfterStreams enrolls n1 and n2 on h and stops them, starts a probe, and brings each
// back on back once its order has passed both replicas: the order went nowhere, or on the
// stream the stopped agent left, which is closing.
func probeAfterStreams(t *testing.T, h, back *harness) {
	ctx := context.Background()
	h.site("ams", 2)
	dirs := map[string]string{}
	for _, name := range []string{"n1", "n2"} {
		dirs[name] = t.TempDir()
		a, stop := h.runAgent(name, h.enrollToken("ams", 1), dirs[name])
		waitGeneration(t, a, 1)
		stop() // the node stays up: the fake clock never reaches its grace
	}
	since := lastEventID(t, h.admin)
	p, err := h.admin.StartProbe(ctx, api.ProbeStart{Selector: "site=ams", Bytes: api.MinProbeBytes, Duration: api.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	comeBack := func(ev api.Event, node string) {
		t.Helper()
		h.srv.settle(ctx, ev)
		back.srv.settle(ctx, ev)
		back.runAgent("", "", dirs[node])
	}
	comeBack(h.waitEvent(since, api.EventProbeLinkStarted, "n2"), "n2")
	comeBack(h.waitEvent(since, api.EventProbeLinkListening, "n1"), "n1")
	h.waitEvent(since, api.EventProbeCompleted, api.ProbeSubject(p.ID))
	got, err := h.admin.Probe(ctx, p.ID)
	if err != nil || got.Done != 1 || got.Failed != 0 || got.Pairs[0].Mbps <= 0 {
		t.Fatalf("probe %+v, %v", got, err)
	}
}

// The connecting agent dials the host the listener states (its --probe-address here), not the
// address its report came from: behind a proxy that is the proxy's.
func TestProbeDialsTheStatedHost(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	h.site("ams", 2)
	for name, host := range map[string]string{"n1": "", "n2": "127.0.0.2"} {
		a, _ := h.runAgentWith(agent.Config{Token: h.enrollToken("ams", 1), Name: name, ProbeAddress: host})
		waitGeneration(t, a, 1)
	}
	since := lastEventID(t, h.admin)
	p, err := h.admin.StartProbe(ctx, api.ProbeStart{Selector: "site=ams", Bytes: api.MinProbeBytes, Duration: api.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var l api.ProbeLinkListening
	if ev := h.waitEvent(since, api.EventProbeLinkListening, "n1"); ev.Decode(&l) != nil || !strings.HasPrefix(l.Addr, "127.0.0.2:") {
		t.Fatalf("n2 listens at %q, want 127.0.0.2", l.Addr)
	}
	h.waitEvent(since, api.EventProbeCompleted, api.ProbeSubject(p.ID))
	if got, err := h.admin.Probe(ctx, p.ID); err != nil || got.Done != 1 {
		t.Fatalf("probe %+v, %v", got, err)
	}
}

// FuzzDecodeProbeReport: an agent's probe report the server accepts is within its bounds
// (throughput and round trips positive and finite, round trips in order, an error alone and
// short), however it was made; a refusal is a 400 in one line, and an accepted report encodes
// back to one that is accepted the same.
func FuzzDecodeProbeReport(f *testing.F) {
	for _, s := range []string{
		`{"rtt_ms":{"min":0.1,"avg":0.2,"max":0.3},"up_mbps":940,"down_mbps":930}`,
		`{"error":"connect to n2 at 10.0.0.2:4000: connection refused"}`,
		`{"rtt_ms":{"min":1,"avg":0.5,"max":2},"up_mbps":1,"down_mbps":1}`,
		`{"rtt_ms":{"min":1e400,"avg":1,"max":1},"up_mbps":1,"down_mbps":1}`,
		`{"port":4000}`, `{"port":4000,"host":"192.0.2.10"}`, `{"port":4000,"host":"2001:db8::1"}`, `{"port":4000,"host":"fe80::1%eth0"}`,
		`{"port":4000,"host":"example.com"}`, `{"port":4000,"host":"0.0.0.0"}`, `{"error":"x","host":"192.0.2.10"}`, `{"port":0,"error":"x"}`, `{"port":70000}`, `{"error":"x","up_mbps":3}`, `[`, `null`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(v interface{ Validate() error }, err error) {
			if err == nil {
				again, _ := json.Marshal(v)
				if err := decodeProbeReport(bytes.NewReader(again), v); err != nil {
					t.Fatalf("%s was accepted, and refused once encoded again: %v", b, err)
				}
				return
			}
			he, ok := err.(*httpError)
			if !ok || he.code != http.StatusBadRequest || strings.ContainsAny(he.msg, "\n\r") {
				t.Fatalf("%s: refused with %v", b, err)
			}
		}
		var res api.ProbeResult
		err := decodeProbeReport(bytes.NewReader(b), &res)
		if err == nil {
			if len(res.Error) > api.MaxProbeError {
				t.Fatalf("%s: accepted an error of %d bytes", b, len(res.Error))
			}
			if res.Error == "" {
				for _, v := range []float64{res.UpMbps, res.DownMbps, res.RTTms.Min, res.RTTms.Avg, res.RTTms.Max} {
					if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
						t.Fatalf("%s: accepted %v", b, v)
					}
				}
				if res.RTTms.Min > res.RTTms.Avg || res.RTTms.Avg > res.RTTms.Max {
					t.Fatalf("%s: accepted round trips out of order", b)
				}
			}
		}
		check(&res, err)
		var l api.ProbeListening
		err = decodeProbeReport(bytes.NewReader(b), &l)
		if err == nil && (l.Error == "" && (l.Port < 1 || l.Port > 65535) || len(l.Error) > api.MaxProbeError || l.Error != "" && l.Host != "") {
			t.Fatalf("%s: accepted %+v", b, l)
		}
		if a, perr := netip.ParseAddr(l.Host); err == nil && l.Host != "" && (perr != nil || a.String() != l.Host || a.IsUnspecified() || a.Zone() != "") {
			t.Fatalf("%s: accepted host %q", b, l.Host)
		}
		check(&l, err)
	})
}
