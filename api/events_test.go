package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// An event's payload survives the wire: NewEvent, JSON out and in, Decode.
func TestEventPayloadRoundTrip(t *testing.T) {
	lat := 52.37
	payloads := map[string]any{
		EventSiteAdded:          &SiteAdded{Tier: 1, Lat: &lat, Lon: &lat},
		EventSiteRemoved:        &SiteRemoved{NodesRevoked: 3},
		EventSiteLabeled:        &SiteLabeled{Set: map[string]string{"pilot": "breaking"}, Removed: []string{"zone"}, Labels: map[string]string{"pilot": "breaking"}},
		EventTokenCreated:       &TokenCreated{Kind: "enroll", Site: "ams"},
		EventNodeEnrolled:       &NodeEnrolled{Site: "ams", Token: "t1"},
		EventNodeUp:             &NodeStatusChanged{From: "down"},
		EventNodeRevoked:        &NodeRevoked{Site: "ams", Reason: "site removed"},
		EventNodeLabeled:        &NodeLabeled{Labels: map[string]string{"role": "mirror"}, Generation: 7},
		EventKeyTrusted:         &KeyTrusted{Comment: "ci"},
		EventChannelCreated:     &ChannelCreated{After: "preview", AllowUnsigned: true},
		EventChannelChanged:     &ChannelChanged{AllowUnsigned: true},
		EventReleasePushed:      &ReleasePushed{SHA256: "ab", Size: 10, SignedBy: "K", Channel: "unstable"},
		EventReleasePromoted:    &ReleasePromoted{To: "production", From: "preview"},
		EventReleaseWithdrawn:   &ReleaseWithdrawn{Reason: "crash", Channels: []string{"a", "b"}, AssignedNodes: 2},
		EventReleaseRepublished: &ReleaseRepublished{From: "1.0.0", Channel: "unstable"},
		EventReleaseDeployed:    &ReleaseDeployed{Nodes: []string{"n1", "n2"}, Channel: "preview"},
		EventAppUndeploy:        &AppUndeployed{Nodes: []string{"n1"}},
		EventAppControl:         &AppControlledEvent{Action: AppRestart, Nodes: []string{"n1"}},
		EventAppRestarted:       &AppRestarted{App: "hello", Version: "1.0.0", Restarts: 2},
		EventAppInstalled:       &AppInstalled{App: "hello", Version: "1.1.0", SHA256: "ab", From: "1.0.0"},
		EventAppFailed:          &AppFailed{App: "hello", Version: "1.1.0", Error: "boom", Retry: true},
		EventAppState:           &AppStateChanged{App: "hello", Version: "1.1.0", From: AppStateVerifying, To: AppStateRolledBack, Reason: "web exited"},
		EventBlobCollected:      &BlobCollected{Size: 42},
		EventCheckAdded:         &CheckAdded{Check: CheckSpec{Name: "load", Selector: "role=mirror", Exec: []string{"/bin/true"}}, Nodes: []string{"n1"}},
		EventCheckRemoved:       &CheckRemoved{Nodes: []string{"n1"}},
		EventCheckState:         &CheckStateChanged{Node: "n1", Check: "load", From: CheckOK, To: CheckCritical, Output: "CRITICAL"},
		EventCheckFlapping:      &CheckFlapping{Node: "n1", Check: "load", Flapping: true, State: CheckWarning},
		EventAlertRaised:        &AlertRaised{ID: 1, Node: "n1", Check: "load", State: CheckCritical, Output: "CRITICAL"},
		EventAlertCleared:       &AlertCleared{ID: 1, Node: "n1", Check: "load", Reason: "ok"},
		EventAlertAcked:         &AlertAcked{ID: 1, Node: "n1", Check: "load", Comment: "known"},
	}
	for typ, p := range payloads {
		b, err := json.Marshal(NewEvent(time.Unix(0, 0), typ, "s", p))
		if err != nil {
			t.Fatal(err)
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil || e.Type != typ {
			t.Fatalf("%s: %s %v", typ, b, err)
		}
		got := reflect.New(reflect.TypeOf(p).Elem()).Interface()
		if err := e.Decode(got); err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("%s: decoded %+v, want %+v (%v)", typ, got, p, err)
		}
	}
	if e := NewEvent(time.Unix(0, 0), EventTokenRevoked, "t1", nil); e.Data != nil || e.Fields() != nil || e.Decode(&struct{}{}) != nil {
		t.Fatalf("an event without a payload: %+v", e)
	}
}
