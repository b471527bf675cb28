package overview

import (
	"context"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// Until the health service is wired, a site's health is its nodes' status.
func TestByNodeStatus(t *testing.T) {
	sites := []api.SiteStatus{
		{Name: "all-up", Up: 3},
		{Name: "some-down", Up: 2, Down: 1},
		{Name: "all-down", Down: 2},
		{Name: "empty"},
	}
	if err := (ByNodeStatus{}).SiteHealth(context.Background(), sites); err != nil {
		t.Fatal(err)
	}
	want := []string{api.HealthOK, api.HealthWarning, api.HealthUnreachable, api.HealthUnknown}
	for i, s := range sites {
		if s.Health != want[i] {
			t.Errorf("%s: health %q, want %q", s.Name, s.Health, want[i])
		}
	}
	counts, failing, err := ByNodeStatus{}.Checks(context.Background())
	if err != nil || counts == nil || len(counts) != 0 || len(failing) != 0 {
		t.Fatalf("checks %v %v %v: want none", counts, failing, err)
	}
}
