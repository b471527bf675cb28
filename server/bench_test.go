package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// BenchmarkHeartbeat measures one agent sync round trip on loopback, with the hold cut to
// nothing so each iteration is one heartbeat: the client's cost is in it too.
func BenchmarkHeartbeat(b *testing.B) {
	t := &testing.T{}
	h := start(t, Config{HeartbeatInterval: time.Nanosecond, HeartbeatGrace: time.Hour})
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
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ac.Sync(ctx, sess.Token, api.Sync{Generation: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
