package health

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
)

func TestCheckSpec(t *testing.T) {
	ok := []api.CheckSpec{
		{Name: "load", Selector: "role=mirror", Exec: []string{"/usr/lib/nagios/plugins/check_load", "-w", "5,4,3", "-c", "10,8,6"}},
		{Name: "web.front_1", Selector: "site=ams", HTTP: "https://localhost:8443/healthz", Interval: api.Duration(30 * time.Second), Retries: 1},
		{Name: "ssh", Selector: "tier==1", TCP: "[::1]:22", Timeout: api.Duration(time.Second)},
		{Name: "disk-root", Selector: "role", Disk: "/", Warn: "10%", Crit: "5GiB"},
	}
	for _, c := range ok {
		if err := CheckSpec(c); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	bad := map[string]api.CheckSpec{
		"invalid check name":    {Name: "-x", Selector: "a", Disk: "/"},
		"give a --selector":     {Name: "x", Disk: "/"},
		"exactly one of":        {Name: "x", Selector: "a", Disk: "/", TCP: "h:1"},
		"got 0":                 {Name: "x", Selector: "a"},
		"absolute, clean path":  {Name: "x", Selector: "a", Exec: []string{"check_load"}},
		"want http://":          {Name: "x", Selector: "a", HTTP: "ftp://h/"},
		"user or password":      {Name: "x", Selector: "a", HTTP: "https://u:p@h/"},
		"want HOST:PORT":        {Name: "x", Selector: "a", TCP: "localhost"},
		"port must be":          {Name: "x", Selector: "a", TCP: "h:70000"},
		"want an absolute path": {Name: "x", Selector: "a", Disk: "var"},
		"a percentage is":       {Name: "x", Selector: "a", Disk: "/", Warn: "120%"},
		"want a percentage":     {Name: "x", Selector: "a", Disk: "/", Crit: "5 parsecs"},
		"thresholds of --disk":  {Name: "x", Selector: "a", TCP: "h:1", Warn: "1%"},
		"--interval":            {Name: "x", Selector: "a", Disk: "/", Interval: api.Duration(time.Millisecond)},
		"--retries":             {Name: "x", Selector: "a", Disk: "/", Retries: 99},
		"--timeout":             {Name: "x", Selector: "a", Disk: "/", Timeout: api.Duration(time.Hour)},
		"selector":              {Name: "x", Selector: "a=b=c", Disk: "/"},
	}
	for want, c := range bad {
		err := CheckSpec(c)
		if !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v; want an invalid error saying %q", c, err, want)
		}
	}
}

// A check spec as an operator's request carries it: whatever the bytes, validation answers
// without panicking, in one line, and what it accepts keeps within the bounds.
func FuzzCheckSpec(f *testing.F) {
	f.Add([]byte(`{"name":"load","selector":"role=mirror","exec":["/usr/lib/nagios/plugins/check_load","-w","5"]}`))
	f.Add([]byte(`{"name":"d","selector":"a","disk":"/","warn":"10%","crit":"5GiB","interval":"30s","retries":3}`))
	f.Add([]byte(`{"name":"h","selector":"a","http":"https://x/","tcp":"x:1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c api.CheckSpec
		if json.Unmarshal(b, &c) != nil {
			return
		}
		err := CheckSpec(c)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error over several lines: %q", err)
			}
			return
		}
		if len(c.Name) > 63 || len(c.Exec) > MaxExecArgs || len(c.HTTP) > MaxTargetLen || len(c.Selector) > MaxSelectorLen {
			t.Fatalf("accepted out of bounds: %+v", c)
		}
	})
}
