package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/pki"
)

// An agent whose token pins another CA than the server's refuses the server from its first
// connection: it never enrolls, says why, and stops, since retrying cannot help.
func TestAgentRefusesServerWithAnotherCA(t *testing.T) {
	f := newFleet(t)
	f.mustFerry("site", "add", "ams", "--tier", "1")
	tok := strings.TrimSpace(f.mustFerry("token", "create", "--site", "ams"))
	cred, pin, err := api.SplitEnrollToken(tok)
	if err != nil || pin == "" {
		t.Fatalf("token %q carries no CA pin: %v", tok, err)
	}
	other, err := pki.EnsureServerCert(t.TempDir(), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := startProc(t, "agent", "--server", f.addr, "--token", cred+"."+other.CAPin(), "--data", t.TempDir(), "--name", "ams-01")
	a.out.waitFor(t, "the enrollment token was made by another server", 30*time.Second)
	if out := f.mustFerry("node", "list", "-o", "json"); strings.Contains(out, "ams-01") {
		t.Fatalf("the agent enrolled with a server it should have refused: %s", out)
	}
	a.kill()

	// The same token with the right pin enrolls; so does one with no pin given the CA file.
	since := f.lastEvent()
	f.agent("ams-01", tok, t.TempDir())
	f.waitEvent(since, "node.enrolled", "ams-01")
	tok2 := strings.TrimSpace(f.mustFerry("token", "create", "--site", "ams"))
	cred2, _, _ := api.SplitEnrollToken(tok2)
	startProc(t, "agent", "--server", f.addr, "--token", cred2, "--ca-cert", f.caFile(), "--data", t.TempDir(), "--name", "ams-02")
	f.waitEvent(since, "node.enrolled", "ams-02")
}

// With --client-ca, the server requires a certificate from that CA of agents and operators.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.EnsureServerCert(filepath.Join(dir, "clients"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) (string, string) {
		cert, key, err := ca.IssueClient(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		os.WriteFile(cf, cert, 0o600)
		os.WriteFile(kf, key, 0o600)
		return cf, kf
	}
	opCert, opKey := issue("operator")
	nodeCert, nodeKey := issue("ams-01")
	listen := freeAddr(t)
	f := &fleet{t: t, data: t.TempDir(), listen: listen, addr: "https://" + listen,
		args: []string{"--client-ca", ca.CA}, clientCert: opCert, clientKey: opKey}
	f.startServer()

	f.mustFerry("site", "add", "ams", "--tier", "1")
	tok := strings.TrimSpace(f.mustFerry("token", "create", "--site", "ams"))

	// An operator without a certificate is refused in the handshake.
	cmd := exec.Command(ferryBin, "site", "list")
	cmd.Env = append(os.Environ(), "FERRY_ADDR="+f.addr, "FERRY_TOKEN="+adminToken(f), "FERRY_CACERT="+f.caFile())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "cannot reach") {
		t.Fatalf("no client certificate: %v %s", err, out)
	}

	// An agent without one never enrolls; with one, it does, and the CLI (with its own) sees it.
	bare := startProc(t, "agent", "--server", f.addr, "--token", tok, "--data", t.TempDir(), "--name", "ams-01")
	bare.out.waitFor(t, "certificate required", 30*time.Second)
	bare.kill()
	since := f.lastEvent()
	startProc(t, "agent", "--server", f.addr, "--token", tok, "--data", t.TempDir(), "--name", "ams-01",
		"--client-cert", nodeCert, "--client-key", nodeKey)
	f.waitEvent(since, "node.enrolled", "ams-01")

	// The audit trail says who did what, from where.
	var evs []api.Event
	if err := json.Unmarshal([]byte(f.mustFerry("events", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	actors := map[string]string{}
	for _, e := range evs {
		actors[e.Type] = e.Actor + " " + e.Role + " " + e.Source
	}
	if a := actors["site.added"]; !strings.HasPrefix(a, "token:") || !strings.HasSuffix(a, " admin 127.0.0.1") {
		t.Errorf("site.added actor %q", a)
	}
	if a := actors["node.enrolled"]; a != "node:ams-01  127.0.0.1" {
		t.Errorf("node.enrolled actor %q", a)
	}
	if out := f.mustFerry("events"); !strings.Contains(out, "ACTOR") || !strings.Contains(out, "node:ams-01") {
		t.Errorf("events table:\n%s", out)
	}
}
