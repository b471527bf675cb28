package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
)

// streamAgent enrolls node in site and opens its agent stream, speaking the protocol itself, so
// that a test can send check results as an agent does.
func (f *fleet) streamAgent(node, site string) *client.Stream {
	f.t.Helper()
	if _, err := f.admin.AddSite(f.ctx, client.SiteAdd{Name: site, Tier: 1}); err != nil {
		f.t.Fatal(err)
	}
	tok, err := f.admin.CreateToken(f.ctx, api.TokenCreate{Site: site})
	if err != nil {
		f.t.Fatal(err)
	}
	ac, err := client.New(f.addr, "")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := ac.UseTLS(pki.ClientOptions{CAFile: f.caFile}); err != nil {
		f.t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pk := base64.StdEncoding.EncodeToString(pub)
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.EnrollMessage(tok.Secret, node, pk)))
	if _, err := ac.Enroll(f.ctx, api.Enroll{Token: tok.Secret, Name: node, PublicKey: pk, Signature: sig}); err != nil {
		f.t.Fatal(err)
	}
	ch, err := ac.Challenge(f.ctx, node)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := ac.Session(f.ctx, api.SessionRequest{Node: node, Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage(node, ch.Nonce)))})
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := ac.OpenStream(f.ctx, s.Token)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { st.Close() })
	return st
}

// syncChecks sends one frame of results and waits for its answer, which comes once the server
// has handled it.
func syncChecks(t *testing.T, st *client.Stream, gen int64, results ...api.CheckResult) api.SyncReply {
	t.Helper()
	for i := range results {
		results[i].Time = time.Now()
	}
	if err := st.Send(api.Sync{Generation: gen, Checks: results}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The check and alert verbs against a real server, with results sent over a real agent stream:
// add reaches the node's desired state, list shows each node's latest result, a hard CRITICAL
// shows as an open alert, ack records who, OK clears it, rm takes the check away; mistakes are
// one clear line, usage mistakes exit 2.
func TestCheckAndAlertVerbs(t *testing.T) {
	f := newFleet(t)
	out := f.mustFerry("check", "add", "load", "--selector", "site=ams", "--retries", "2", "--interval", "30s",
		"--exec", "--", "/usr/lib/nagios/plugins/check_load", "-w", "5,4,3", "-c", "10,8,6")
	if !strings.Contains(out, "check load added") {
		t.Fatalf("check add printed %q", out)
	}
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"check", "add", "x", "--selector", "a", "--exec"}, 2, "after --"},
		{[]string{"check", "add", "x", "--selector", "a"}, 2, "exactly one of"},
		{[]string{"check", "add", "x", "--selector", "a", "--tcp", "h:1", "--disk", "/"}, 2, "exactly one of"},
		{[]string{"check", "add", "x", "--selector", "a", "--http", "ftp://h/"}, 1, "want http://"},
		{[]string{"check", "add", "x", "--selector", "a", "--exec", "--", "check_load"}, 1, "absolute"},
		{[]string{"check", "add", "load", "--selector", "a", "--tcp", "h:22"}, 1, "exists"},
		{[]string{"check", "rm", "nope"}, 1, "no check nope"},
		{[]string{"alert", "ack", "abc"}, 2, "no alert id"},
		{[]string{"alert", "ack", "99"}, 1, "no alert 99"},
		{[]string{"check", "history", "load"}, 2, "--node"},
	} {
		_, errOut, code := f.ferry(tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.msg) || strings.Count(strings.TrimSpace(errOut), "\n") > 2 {
			t.Errorf("ferry %s: exit %d, %q; want %d saying %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.msg)
		}
	}

	st := f.streamAgent("n1", "ams")
	first := syncChecks(t, st, 0)
	if first.Desired == nil || len(first.Desired.Checks) != 1 || strings.Join(first.Desired.Checks[0].Exec, " ") != "/usr/lib/nagios/plugins/check_load -w 5,4,3 -c 10,8,6" {
		t.Fatalf("desired state %+v", first.Desired)
	}
	gen := first.Generation
	syncChecks(t, st, gen, api.CheckResult{Check: "load", State: api.CheckCritical, Hard: true, Attempt: 2,
		Output: "CRITICAL - load average: 12.00, 9.00, 7.00", Perf: []api.CheckPerf{{Label: "load1", Value: 12}}})

	var listing []map[string]any
	if err := json.Unmarshal([]byte(f.mustFerry("check", "list", "-o", "json")), &listing); err != nil || len(listing) != 1 {
		t.Fatalf("check list -o json: %v %v", listing, err)
	}
	results, _ := listing[0]["results"].([]any)
	if len(results) != 1 {
		t.Fatalf("check list results: %v", listing[0])
	}
	res := results[0].(map[string]any)
	for _, k := range []string{"node", "state", "output", "time", "hard", "check"} {
		if _, ok := res[k]; !ok {
			t.Errorf("a result without %q: %v", k, res)
		}
	}
	if res["node"] != "n1" || res["state"] != "CRITICAL" || res["hard"] != true {
		t.Fatalf("result %v", res)
	}
	if table := f.mustFerry("check", "list"); !strings.Contains(table, "CRITICAL") || !strings.Contains(table, "exec /usr/lib/nagios/plugins/check_load") {
		t.Fatalf("check list:\n%s", table)
	}

	var alerts []api.Alert
	if err := json.Unmarshal([]byte(f.mustFerry("alert", "list", "-o", "json")), &alerts); err != nil || len(alerts) != 1 ||
		alerts[0].Node != "n1" || alerts[0].Check != "load" || alerts[0].State != api.CheckCritical {
		t.Fatalf("alert list -o json: %+v %v", alerts, err)
	}
	id := strconv.FormatInt(alerts[0].ID, 10)
	if table := f.mustFerry("alert", "list"); !strings.Contains(table, "ACKED BY") || !strings.Contains(table, "CRITICAL - load average") {
		t.Fatalf("alert list:\n%s", table)
	}
	if out := f.mustFerry("alert", "ack", id, "--comment", "backup job"); !strings.Contains(out, "acknowledged") {
		t.Fatalf("alert ack printed %q", out)
	}
	json.Unmarshal([]byte(f.mustFerry("alert", "list", "-o", "json")), &alerts)
	if len(alerts) != 1 || !strings.HasPrefix(alerts[0].AckedBy, "token:") || alerts[0].Comment != "backup job" {
		t.Fatalf("after ack: %+v", alerts)
	}
	if _, errOut, code := f.ferry("alert", "ack", id); code != 1 || !strings.Contains(errOut, "acknowledged by") {
		t.Fatalf("second ack: %d %q", code, errOut)
	}

	syncChecks(t, st, gen, api.CheckResult{Check: "load", State: api.CheckOK, Hard: true, Output: "OK - load average: 0.50"})
	if out := f.mustFerry("alert", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("open alerts after OK: %s", out)
	}
	json.Unmarshal([]byte(f.mustFerry("alert", "list", "--all", "-o", "json")), &alerts)
	if len(alerts) != 1 || alerts[0].ClearedAt == nil {
		t.Fatalf("alert list --all: %+v", alerts)
	}
	var hist []api.CheckBucket
	if err := json.Unmarshal([]byte(f.mustFerry("check", "history", "load", "--node", "n1", "-o", "json")), &hist); err != nil || len(hist) == 0 {
		t.Fatalf("check history: %+v %v", hist, err)
	}
	runs, worst := 0, api.CheckOK
	for _, b := range hist {
		runs += b.Count
		if b.Worst == api.CheckCritical {
			worst = b.Worst
		}
	}
	if runs != 2 || worst != api.CheckCritical { // two runs, in one minute's bucket or two
		t.Fatalf("check history: %+v", hist)
	}

	if out := f.mustFerry("check", "rm", "load"); !strings.Contains(out, "check load removed") {
		t.Fatalf("check rm printed %q", out)
	}
	if r, err := st.Recv(); err != nil || r.Desired == nil || len(r.Desired.Checks) != 0 {
		t.Fatalf("push after rm: %+v %v", r, err)
	}
	if out := f.mustFerry("check", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("check list after rm: %s", out)
	}
}
