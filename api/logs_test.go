package api

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// node.logs_requested carries the request and the replica in one flat object.
func TestNodeLogsRequestedRoundTrip(t *testing.T) {
	p := NodeLogsRequested{LogsRequest: LogsRequest{ID: "0123456789abcdef0123456789abcdef", App: "hello", Process: "web", Tail: 5, Follow: true}, Replica: "r1"}
	e := NewEvent(time.Unix(0, 0), EventNodeLogsRequested, "n1", p)
	var flat map[string]any
	if err := json.Unmarshal(e.Data, &flat); err != nil || flat["app"] != "hello" || flat["replica"] != "r1" || flat["tail"] != 5.0 {
		t.Fatalf("payload: %s %v", e.Data, err)
	}
	var got NodeLogsRequested
	if err := e.Decode(&got); err != nil || !reflect.DeepEqual(got, p) || got.Validate() != nil {
		t.Fatalf("decoded %+v, want %+v (%v)", got, p, err)
	}
}

// What an agent takes from a frame names files on the node: Validate must let through only
// plain names, a tail within bounds and a well-formed id.
func FuzzLogsRequest(f *testing.F) {
	f.Add(`{"id":"0123456789abcdef0123456789abcdef","app":"hello","process":"web","tail":5,"follow":true}`)
	f.Add(`{"id":"0123456789ABCDEF0123456789ABCDEF","app":"hello","tail":5}`)
	f.Add(`{"id":"../../etc","app":"../x","tail":-1}`)
	f.Add(`{"logs":{"id":"x"}}`)
	f.Fuzz(func(t *testing.T, frame string) {
		var r SyncReply
		if err := json.Unmarshal([]byte(`{"generation":0,"heartbeat_interval":"0s","logs":`+frame+`}`), &r); err != nil || r.Logs == nil {
			return
		}
		req := *r.Logs
		if req.Validate() != nil {
			return
		}
		// What passes may name files: the app and process are plain names, the tail in bounds.
		if filepath.Base(req.App) != req.App || (req.Process != "" && filepath.Base(req.Process) != req.Process) ||
			req.App == "." || req.App == ".." || req.Tail < 0 || req.Tail > MaxLogsTail || len(req.ID) != 32 {
			t.Fatalf("accepted %+v", req)
		}
	})
}
