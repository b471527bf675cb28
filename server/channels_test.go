package server

import (
	"context"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// The bulletin lists each app's candidates in promotion order, and by channel name as before.
func TestBulletinPromotionOrder(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	if _, err := h.admin.CreateChannel(ctx, api.ChannelCreate{Name: "canary", After: "unstable"}); err != nil {
		t.Fatal(err)
	}
	pushSigned(t, h, "hello", "1.0.0")
	for _, ch := range []string{"canary", "preview", "production"} {
		if _, err := h.admin.Promote(ctx, "hello", "1.0.0", api.Promote{To: ch}); err != nil {
			t.Fatal(err)
		}
	}
	pushSigned(t, h, "hello", "1.1.0")
	pushSigned(t, h, "world", "2.0.0")
	want := []api.ChannelCandidate{
		{Channel: "unstable", Version: "1.1.0"},
		{Channel: "canary", Version: "1.0.0"},
		{Channel: "preview", Version: "1.0.0"},
		{Channel: "production", Version: "1.0.0"},
	}
	for _, app := range []string{"", "hello"} {
		b, err := h.admin.Bulletin(ctx, app, "")
		if err != nil || len(b.Apps) == 0 || b.Apps[0].App != "hello" {
			t.Fatalf("bulletin of %q: %+v %v", app, b, err)
		}
		got := b.Apps[0]
		if len(got.Candidates) != len(want) || len(got.Channels) != len(want) {
			t.Fatalf("bulletin of %q: hello's candidates %+v, channels %v; want %+v", app, got.Candidates, got.Channels, want)
		}
		for i, c := range want {
			if got.Candidates[i] != c || got.Channels[c.Channel] != c.Version {
				t.Errorf("bulletin of %q: hello's candidates %+v, channels %v; want %+v", app, got.Candidates, got.Channels, want)
				break
			}
		}
	}
	b, err := h.admin.Bulletin(ctx, "world", "")
	if err != nil || len(b.Apps) != 1 || len(b.Apps[0].Candidates) != 1 || b.Apps[0].Candidates[0] != (api.ChannelCandidate{Channel: "unstable", Version: "2.0.0"}) {
		t.Fatalf("bulletin of world: %+v %v", b, err)
	}
}
