package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/inventory"
)

func TestBadInputChangesNothing(t *testing.T) {
	h := start(t, Config{})
	h.site("ams", 1)
	before := lastEventID(t, h.admin)
	big := `{"name":"` + strings.Repeat("a", maxBody) + `","tier":1}`
	cases := []struct {
		name, method, path, ctype, body string
		code                            int
	}{
		{"malformed JSON", "POST", "/v1/sites", "application/json", `{"name":`, 400},
		{"unknown field", "POST", "/v1/sites", "application/json", `{"name":"x","tier":1,"colour":"red"}`, 400},
		{"trailing data", "POST", "/v1/sites", "application/json", `{"name":"x","tier":1}{}`, 400},
		{"empty body", "POST", "/v1/sites", "application/json", ``, 400},
		{"oversized body", "POST", "/v1/sites", "application/json", big, 413},
		{"wrong content type", "POST", "/v1/sites", "text/plain", `{"name":"x","tier":1}`, 415},
		{"bad site name", "POST", "/v1/sites", "application/json", `{"name":"Bad_Name","tier":1}`, 400},
		{"bad tier", "POST", "/v1/sites", "application/json", `{"name":"x","tier":4}`, 400},
		{"half a location", "POST", "/v1/sites", "application/json", `{"name":"x","tier":1,"lat":1}`, 400},
		{"bad latitude", "POST", "/v1/sites", "application/json", `{"name":"x","tier":1,"lat":91,"lon":0}`, 400},
		{"duplicate site", "POST", "/v1/sites", "application/json", `{"name":"ams","tier":2}`, 409},
		{"token for missing site", "POST", "/v1/tokens", "application/json", `{"site":"nope"}`, 404},
		{"token with site and role", "POST", "/v1/tokens", "application/json", `{"site":"ams","role":"admin"}`, 400},
		{"bad role", "POST", "/v1/tokens", "application/json", `{"role":"root"}`, 400},
		{"bad ttl", "POST", "/v1/tokens", "application/json", `{"site":"ams","ttl":"-1h"}`, 400},
		{"bad uses", "POST", "/v1/tokens", "application/json", `{"site":"ams","uses":-2}`, 400},
		{"label missing node", "POST", "/v1/nodes/nope/labels", "application/json", `{"set":{"a":"b"}}`, 404},
		{"bad label key", "POST", "/v1/labels", "application/json", `{"selector":"site","set":{"A":"b"}}`, 400},
		{"implicit label", "POST", "/v1/labels", "application/json", `{"selector":"site","set":{"tier":"2"}}`, 400},
		{"empty change", "POST", "/v1/labels", "application/json", `{"selector":"site"}`, 400},
		{"label missing site", "POST", "/v1/sites/nope/labels", "application/json", `{"set":{"pilot":"breaking"}}`, 404},
		{"site label implicit site", "POST", "/v1/sites/ams/labels", "application/json", `{"set":{"site":"gva"}}`, 400},
		{"site label implicit tier", "POST", "/v1/sites/ams/labels", "application/json", `{"set":{"tier":"2"}}`, 400},
		{"site label bad value", "POST", "/v1/sites/ams/labels", "application/json", `{"set":{"pilot":"no way"}}`, 400},
		{"site label with a selector", "POST", "/v1/sites/ams/labels", "application/json", `{"selector":"site","set":{"pilot":"x"}}`, 400},
		{"site label empty change", "POST", "/v1/sites/ams/labels", "application/json", `{}`, 400},
		{"site label unknown field", "POST", "/v1/sites/ams/labels", "application/json", `{"labels":{"pilot":"x"}}`, 400},
		{"bad selector", "GET", "/v1/nodes?selector=a%3D%3D%3Db", "", ``, 400},
		{"bad status", "GET", "/v1/nodes?status=sleepy", "", ``, 400},
		{"bad since", "GET", "/v1/events?since=-1", "", ``, 400},
		{"remove missing site", "DELETE", "/v1/sites/nope", "", ``, 404},
		{"deploy without a version", "POST", "/v1/deploy", "application/json", `{"release":"hello","selector":"site"}`, 400},
		{"deploy without a selector", "POST", "/v1/deploy", "application/json", `{"release":"hello@1.0.0"}`, 400},
		{"deploy with a bad selector", "POST", "/v1/deploy", "application/json", `{"release":"hello@1.0.0","selector":"a==="}`, 400},
		{"deploy a missing release", "POST", "/v1/deploy", "application/json", `{"release":"hello@1.0.0","selector":"site"}`, 404},
		{"follow a channel with a version", "POST", "/v1/deploy", "application/json", `{"release":"hello@1.0.0","channel":"unstable","selector":"site"}`, 400},
		{"follow a channel with a bad app name", "POST", "/v1/deploy", "application/json", `{"release":"Hello World","channel":"unstable","selector":"site"}`, 400},
		{"follow a missing channel", "POST", "/v1/deploy", "application/json", `{"release":"hello","channel":"nowhere","selector":"site"}`, 404},
		{"follow a channel without the app", "POST", "/v1/deploy", "application/json", `{"release":"hello","channel":"unstable","selector":"site"}`, 409},
		{"undeploy a bad app name", "POST", "/v1/undeploy", "application/json", `{"app":"../x","selector":"site"}`, 400},
		{"an unknown app action", "POST", "/v1/apps/control", "application/json", `{"app":"hello","action":"pause","nodes":["n1"]}`, 400},
		{"an app action on no node", "POST", "/v1/apps/control", "application/json", `{"app":"hello","action":"stop","nodes":[]}`, 400},
		{"an app action on a bad app name", "POST", "/v1/apps/control", "application/json", `{"app":"Hello!","action":"stop","nodes":["n1"]}`, 400},
		{"undeploy without a selector", "POST", "/v1/undeploy", "application/json", `{"app":"hello"}`, 400},
		{"undeploy with an unknown field", "POST", "/v1/undeploy", "application/json", `{"app":"hello","selector":"site","force":true}`, 400},
		{"channel set without a change", "PATCH", "/v1/channels/unstable", "application/json", `{}`, 400},
		{"channel set on a missing channel", "PATCH", "/v1/channels/nope", "application/json", `{"allow_unsigned":true}`, 404},
		{"no such route", "GET", "/v1/nothing", "", ``, 404},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, h.addr+c.path, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		req.Header.Set("Authorization", "Bearer "+h.srv.AdminToken)
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e api.Error
		if resp.StatusCode != c.code || json.Unmarshal(body, &e) != nil || e.Error == "" || bytes.Count(body, []byte("\n")) > 3 {
			t.Errorf("%s: %d %s, want %d with a one-line JSON error", c.name, resp.StatusCode, body, c.code)
		}
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("bad input wrote events (%d → %d)", before, got)
	}
	sites, _ := h.admin.Sites(context.Background())
	if len(sites) != 1 {
		t.Fatalf("bad input created sites: %+v", sites)
	}
}

// FuzzDecode feeds arbitrary bytes to every request decoder: none may panic, and whatever is
// accepted must pass its own validation or be refused by it cleanly.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{}`, `{"name":"ams","tier":1}`, `{"token":"t","name":"n","public_key":"","signature":""}`,
		`{"generation":3,"facts":{"cpus":2}}`, `{"generation":1,"apps":[{"app":"hello","version":"1.0.0","error":"x"}]}`, `{"selector":"a=b","set":{"k":"v"},"remove":["x"]}`, `[`, `{"a":1}`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []any{&api.SiteAdd{}, &api.TokenCreate{}, &api.Enroll{}, &api.ChallengeRequest{}, &api.SessionRequest{}, &api.Sync{}, &api.LabelChange{},
			&api.Deploy{}, &api.ChannelSet{}, &api.Undeploy{}, &api.AppControl{}}
		for _, v := range targets {
			if err := decodeJSON(bytes.NewReader(b), v); err != nil {
				if _, ok := err.(*httpError); !ok {
					t.Fatalf("decode %T: error %v is not a client error", v, err)
				}
				continue
			}
			switch r := v.(type) {
			case *api.SiteAdd:
				inventory.CheckSite(*r)
			case *api.LabelChange:
				inventory.CheckChange(*r)
			case *api.Sync:
				if r.Apps != nil {
					validApps(*r.Apps)
				}
			}
		}
	})
}

// An app report the server accepts is bounded and holds nothing that steers a terminal, however
// it was made; a refusal is a 400 in one clean line.
func FuzzValidApps(f *testing.F) {
	for _, s := range []string{
		`[{"app":"hello","version":"1.0.0","state":"running","processes":[{"name":"web","state":"running","pid":42,"restarts":0}],"ports":{"http":31000}}]`,
		`[{"app":"hello","version":"1.0.0","pending":"1.1.0","state":"rolled_back","error":"verify: web exited 1","log_tail":"panic: boom\n\tat main.go:3\n"}]`,
		`[{"app":"hello","state":"sleeping"}]`, `[{"app":"hello","log_tail":"\u001b[2J"}]`,
		`[{"app":"hello","processes":[{"name":"web","state":"running","last_exit":{"time":"2026-01-01T00:00:00Z","signal":"SIGKILL"}}]}]`,
		`[{"app":"hello","ports":{"http":0,"Bad Name":70000}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var apps []api.NodeApp
		if json.Unmarshal(b, &apps) != nil {
			return
		}
		if err := validApps(apps); err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.code != http.StatusBadRequest || strings.ContainsAny(err.Error(), "\n\r\x1b") {
				t.Fatalf("refusal is not a clean 400: %q", err.Error())
			}
			return
		}
		for _, a := range apps {
			if a.State != "" && !slices.Contains(api.AppStates, a.State) {
				t.Fatalf("accepted state %q", a.State)
			}
			if len(a.LogTail) > api.MaxLogTail || strings.ContainsAny(a.LogTail, "\x1b\r\u202e") {
				t.Fatalf("accepted log tail %q", a.LogTail)
			}
			if len(a.Processes) > maxReportedProcesses || len(a.Ports) > maxReportedPorts {
				t.Fatalf("accepted %d processes and %d ports", len(a.Processes), len(a.Ports))
			}
			for _, p := range a.Processes {
				if !processStates[p.State] || p.PID < 0 || p.Restarts < 0 || strings.ContainsAny(p.Name, "\x1b\n ") {
					t.Fatalf("accepted process %+v", p)
				}
			}
			for name, port := range a.Ports {
				if port < 1 || port > 65535 || strings.ContainsAny(name, "\x1b\n =") {
					t.Fatalf("accepted port %q=%d", name, port)
				}
			}
		}
	})
}
