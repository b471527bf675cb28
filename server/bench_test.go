package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
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
