package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/store"
)

// BenchmarkHeartbeat measures one heartbeat on an agent stream over loopback TLS: a frame sent
// and its answer read. The client's cost is in it too.
func BenchmarkHeartbeat(b *testing.B) {
	t := &testing.T{}
	h := start(t, Config{HeartbeatInterval: time.Hour})
	defer h.stop()
	h.site("ams", 1)
	tok := h.enrollToken("ams", 1)
	req, priv := signed(t, tok, "n1")
	ac := h.client("")
	ac.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	ctx := context.Background()
	if _, err := ac.Enroll(ctx, req); err != nil {
		b.Fatal(err)
	}
	ch, _ := ac.Challenge(ctx, "n1")
	sess, err := ac.Session(ctx, api.SessionRequest{Node: "n1", Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage("n1", ch.Nonce)))})
	if err != nil {
		b.Fatal(err)
	}
	st, err := ac.OpenStream(ctx, sess.Token)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := st.Send(api.Sync{Generation: 1}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamStacks reports the goroutine stack memory one open agent stream holds on the
// server once it has been answered and is idle (the client side holds no goroutines here).
func BenchmarkStreamStacks(b *testing.B) {
	const n = 500
	t := &testing.T{}
	h := start(t, Config{HeartbeatInterval: time.Hour, PublicRate: 1e6, PublicBurst: 1e6})
	defer h.stop()
	h.site("ams", 1)
	tok := h.enrollToken("ams", n)
	ctx := context.Background()
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	stacks := func() uint64 {
		runtime.GC()
		runtime.GC()
		rtmetrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	for range b.N {
		before := stacks()
		goroutines := runtime.NumGoroutine()
		var streams []*client.Stream
		for i := range n {
			name := fmt.Sprintf("n%d-%d", len(streams), i)
			req, priv := signed(t, tok, name)
			ac := h.client("")
			if _, err := ac.Enroll(ctx, req); err != nil {
				b.Fatal(err)
			}
			ch, _ := ac.Challenge(ctx, name)
			sess, err := ac.Session(ctx, api.SessionRequest{Node: name, Nonce: ch.Nonce,
				Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage(name, ch.Nonce)))})
			if err != nil {
				b.Fatal(err)
			}
			st, err := ac.OpenStream(ctx, sess.Token)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.Send(api.Sync{}); err != nil {
				b.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				b.Fatal(err)
			}
			streams = append(streams, st)
			ac.HTTP.CloseIdleConnections() // neither side keeps the enrollment's connection
		}
		b.ReportMetric(float64(stacks()-before)/n, "stack-B/stream")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/n, "goroutines/stream")
		for _, st := range streams {
			st.Close()
		}
	}
}

// BenchmarkScrape10k measures a scrape of /metrics over a fleet of 10,000 nodes at 500 sites,
// each reporting two apps: "cached" reuses the fleet's snapshot (scrapes within fleetMaxAge of
// the last, however many scrapers), "fresh" reads the fleet anew after it changed (one scrape
// per fleetMaxAge at most).
func BenchmarkScrape10k(b *testing.B) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "ferry.db"))
	if err != nil {
		b.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	now := clk.Now()
	err = st.Update(ctx, func(tx store.Tx) error {
		for s := range 500 {
			if err := tx.InsertSite(api.Site{Name: fmt.Sprintf("s%03d", s), Tier: 2, CreatedAt: now}); err != nil {
				return err
			}
		}
		for i := range 10000 {
			name := fmt.Sprintf("n%05d", i)
			if err := tx.InsertNode(fmt.Sprintf("s%03d", i%500), store.NodeRecord{Name: name, PublicKey: name}, now); err != nil {
				return err
			}
			apps := []api.NodeApp{{App: "hello", Version: fmt.Sprintf("1.%d.0", i%3), State: api.AppStateRunning},
				{App: "mirror", Version: "2.0.0", State: api.AppStateRunning}}
			if err := tx.SetNodeApps(name, apps); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(ctx, Config{DataDir: b.TempDir(), Store: st, Clock: clk, InsecureHTTP: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	scrape := func() {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `ferry_apps{app="hello",state="running",version="1.0.0"} 3334`) {
			b.Fatalf("/metrics: %d %.300s", rec.Code, rec.Body.String())
		}
	}
	b.Run("cached", func(b *testing.B) {
		scrape()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			scrape()
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			b.StopTimer()
			if err := st.TouchNodes(ctx, map[string]time.Time{"n00000": now.Add(time.Duration(i) * time.Second)}); err != nil {
				b.Fatal(err)
			}
			clk.Advance(fleetMaxAge)
			b.StartTimer()
			scrape()
		}
	})
}
