package health

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferryhq/ferry/api"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestCheckResultRefusesAndCuts(t *testing.T) {
	good := api.CheckResult{Check: "load", State: api.CheckWarning, Output: "LOAD WARNING", Time: t0}
	bad := map[string]api.CheckResult{
		"unknown state":      {Check: "load", State: "BAD", Time: t0},
		"invalid check name": {Check: "Load!", State: api.CheckOK, Time: t0},
		"invalid app check":  {Check: "web/http", App: "api", State: api.CheckOK, Time: t0},
		"not APP/NAME":       {Check: "http", App: "web", State: api.CheckOK, Time: t0},
		"without a time":     {Check: "load", State: api.CheckOK},
		"perf item":          {Check: "load", State: api.CheckOK, Time: t0, Perf: []api.CheckPerf{{Label: ""}}},
	}
	for want, r := range bad {
		if _, err := CheckResult(r, t0); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v; want an error saying %q", r, err, want)
		}
	}
	long := good
	long.Output = strings.Repeat("é", api.MaxCheckOutput) + "\x1b[2J"
	long.Perf = make([]api.CheckPerf, api.MaxCheckPerf+5)
	for i := range long.Perf {
		long.Perf[i].Label = "p"
	}
	long.Time = t0.Add(time.Hour)
	got, err := CheckResult(long, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Output) > api.MaxCheckOutput || !utf8.ValidString(got.Output) || len(got.Perf) != api.MaxCheckPerf || !got.Time.Equal(t0) {
		t.Fatalf("not cut: output %d bytes, %d perf, time %s", len(got.Output), len(got.Perf), got.Time)
	}
	if got, _ := CheckResult(api.CheckResult{Check: "web/http", App: "web", State: api.CheckOK, Time: t0}, t0); !got.Hard {
		t.Fatal("an OK result is hard")
	}
}

// A frame's check results as an agent sends them: whatever the bytes, CheckResult answers
// without panicking in one line, and what it keeps is within the contract's bounds.
func FuzzCheckResults(f *testing.F) {
	f.Add([]byte(`[{"check":"load","state":"OK","hard":true,"output":"OK - load 0.1","perf":[{"label":"load1","value":0.1}],"time":"2026-05-01T12:00:00Z"}]`))
	f.Add([]byte(`[{"check":"web/http","app":"web","state":"CRITICAL","attempt":2,"time":"2099-01-01T00:00:00Z","flapping":true}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rs []api.CheckResult
		if json.Unmarshal(b, &rs) != nil {
			return
		}
		for _, r := range rs {
			got, err := CheckResult(r, t0)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error over several lines: %q", err)
				}
				continue
			}
			if len(got.Output) > api.MaxCheckOutput || !api.Printable(got.Output) || len(got.Perf) > api.MaxCheckPerf ||
				got.Time.After(t0.Add(MaxSkew)) {
				t.Fatalf("kept out of bounds: %+v", got)
			}
			if _, ok := rank[got.State]; !ok {
				t.Fatalf("kept state %q", got.State)
			}
		}
	})
}

// History buckets: the worst state, the count and each perf label's min/avg/max, with no more
// than MaxPerfSeries labels.
func TestAggregate(t *testing.T) {
	var a agg
	for i, st := range []string{api.CheckOK, api.CheckCritical, api.CheckWarning} {
		r := api.CheckResult{State: st, Perf: []api.CheckPerf{{Label: "load1", Value: float64(i + 1)}}}
		for j := range MaxPerfSeries + 2 {
			r.Perf = append(r.Perf, api.CheckPerf{Label: string(rune('a' + j)), Value: 1})
		}
		a.add(r)
	}
	b := a.bucket(time.Minute)
	if b.Worst != api.CheckCritical || b.Count != 3 || len(b.Perf) != MaxPerfSeries {
		t.Fatalf("bucket %+v", b)
	}
	if p := b.Perf[0]; p.Label != "load1" || p.Min != 1 || p.Avg != 2 || p.Max != 3 {
		t.Fatalf("perf %+v", p)
	}
}

func TestSiteHealth(t *testing.T) {
	for _, tt := range []struct {
		nodes []string
		want  string
	}{
		{nil, api.HealthUnknown},
		{[]string{api.HealthUnreachable, api.HealthUnreachable}, api.HealthUnreachable},
		{[]string{api.HealthOK, api.HealthOK}, api.HealthOK},
		{[]string{api.HealthOK, api.HealthUnreachable}, api.HealthWarning},
		{[]string{api.HealthCritical, api.HealthUnreachable}, api.HealthCritical},
		{[]string{api.HealthOK, api.HealthUnknown}, api.HealthWarning},
		{[]string{api.HealthWarning, api.HealthCritical, api.HealthOK}, api.HealthCritical},
	} {
		if got := SiteHealth(tt.nodes); got != tt.want {
			t.Errorf("SiteHealth(%v) = %s, want %s", tt.nodes, got, tt.want)
		}
	}
}
