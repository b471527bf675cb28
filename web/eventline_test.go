package web

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

func TestEventLine(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		ev   api.Event
		want string
	}{
		{api.NewEvent(at, api.EventAppInstalled, "n1", api.AppInstalled{App: "hello", Version: "1.2.0"}), "hello 1.2.0 installed"},
		{api.NewEvent(at, api.EventAppInstalled, "n1", api.AppInstalled{App: "hello", Version: "1.2.0", From: "1.1.0"}), "hello 1.2.0 installed (was 1.1.0)"},
		{api.NewEvent(at, api.EventCheckState, "n1", api.CheckStateChanged{Check: "disk", From: "OK", To: "CRITICAL", Output: "95% used"}), "check disk CRITICAL (hard, was OK): 95% used"},
		{api.NewEvent(at, api.EventAlertAcked, "n1", api.AlertAcked{ID: 3, Check: "disk", Comment: "cleaning up"}), "alert 3 on check disk acknowledged: cleaning up"},
		{api.NewEvent(at, api.EventAlertAcked, "n1", api.AlertAcked{ID: 3, Check: "disk"}), "alert 3 on check disk acknowledged"},
		{api.NewEvent(at, api.EventNodeDown, "n1", api.NodeStatusChanged{From: "up"}), "down (was up)"},
		// No words for it, or a payload that does not read: the type.
		{api.NewEvent(at, api.EventNodeLogsRequested, "n1", nil), api.EventNodeLogsRequested},
		{api.Event{Type: api.EventAppFailed, Data: []byte(`{"app": 7}`)}, api.EventAppFailed},
	} {
		if got := eventLine(c.ev); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.ev.Type, c.ev.Data, got, c.want)
		}
	}
}
