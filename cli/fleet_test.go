package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/signing"
)

// fleet is a real server on loopback, in this process, with the agents a test starts; the CLI
// runs against it through run, as the ferry binary would.
type fleet struct {
	t      *testing.T
	ctx    context.Context
	addr   string
	caFile string
	token  string
	admin  *client.Client
	keyDir string // a signing key pair the server trusts, made by push
}

// quiet is a logger that drops everything.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newFleet(t *testing.T) *fleet { t.Helper(); return newFleetWith(t, server.Config{}) }

// newFleetWith is newFleet with a server configured by cfg (its data dir, address and logger
// are the fleet's).
func newFleetWith(t *testing.T, cfg server.Config) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.Listen, cfg.Logger = t.TempDir(), l.Addr().String(), quiet()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	f := &fleet{t: t, ctx: ctx, addr: srv.Scheme() + "://" + l.Addr().String(), caFile: srv.CAFile, token: srv.AdminToken}
	if f.admin, err = client.New(f.addr, f.token); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.UseTLS(pki.ClientOptions{CAFile: f.caFile}); err != nil {
		t.Fatal(err)
	}
	return f
}

// ferry runs the CLI with the fleet's address, admin token and CA in its environment, and
// returns what it printed (stderr ends with the line ferry prints for an error) and its exit
// status.
func (f *fleet) ferry(args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	env := map[string]string{"FERRY_ADDR": f.addr, "FERRY_TOKEN": f.token, "FERRY_CACERT": f.caFile}
	return ferryWith(f.ctx, func(k string) string { return env[k] }, args...)
}

// mustFerry runs the CLI and fails the test unless it succeeds.
func (f *fleet) mustFerry(args ...string) string {
	f.t.Helper()
	out, errOut, code := f.ferry(args...)
	if code != 0 {
		f.t.Fatalf("ferry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// ferryWith runs the CLI with the given environment.
func ferryWith(ctx context.Context, getenv func(string) string, args ...string) (stdout, stderr string, code int) {
	var out, errb strings.Builder
	err := run(ctx, args, &out, &errb, getenv)
	if err != nil {
		fmt.Fprintln(&errb, Message(err))
	}
	return out.String(), errb.String(), ExitCode(err)
}

// agent starts a real agent for node name in site (made when missing), with labels, and waits
// until it has enrolled; stop ends it (before the test does).
func (f *fleet) agent(name, site string, lbls map[string]string) (stop func()) {
	f.t.Helper()
	return f.agentWith(name, site, lbls, nil)
}

// agentWith is agent with a fault hook, called before each step of an install (agent.Config's
// Fault) with the agent itself.
func (f *fleet) agentWith(name, site string, lbls map[string]string, fault func(a *agent.Agent, app, step string) error) (stop func()) {
	f.t.Helper()
	if _, err := f.admin.AddSite(f.ctx, client.SiteAdd{Name: site, Tier: 2}); err != nil && client.StatusOf(err) != http.StatusConflict {
		f.t.Fatal(err)
	}
	tok, err := f.admin.CreateToken(f.ctx, api.TokenCreate{Site: site})
	if err != nil {
		f.t.Fatal(err)
	}
	var a *agent.Agent
	cfg := agent.Config{Server: f.addr, Token: tok.Secret, DataDir: f.t.TempDir(), Name: name, Labels: lbls,
		CACert: f.caFile, Logger: quiet()}
	if fault != nil {
		cfg.Fault = func(app, step string) error { return fault(a, app, step) }
	}
	a, err = agent.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	stop = func() { cancel(); <-done }
	f.t.Cleanup(stop)
	wait, unwait := context.WithTimeout(f.ctx, 30*time.Second)
	defer unwait()
	if _, err := f.admin.WaitEvent(wait, 0, func(e api.Event) bool { return e.Type == "node.enrolled" && e.Subject == name }); err != nil {
		f.t.Fatalf("agent %s did not enroll: %v", name, err)
	}
	// Its stream is open once it holds the desired state the server answered with: what the
	// test asks of the node next reaches it.
	for {
		d, changed := a.Desired()
		if d.Generation >= 1 {
			return stop
		}
		select {
		case <-changed:
		case <-wait.Done():
			f.t.Fatalf("agent %s holds no desired state: its stream did not open", name)
		}
	}
}

// bundle builds app@version in a temporary directory and returns the bundle's file.
func (f *fleet) bundle(app, version string) string { return f.bundleWith(app, version, "") }

// bundleWith builds app@version with more manifest lines (processes, update, …).
func (f *fleet) bundleWith(app, version, more string) string {
	f.t.Helper()
	src := f.t.TempDir()
	manifest := fmt.Sprintf("app: %s\nversion: %q\nclass: minor\n", app, version) + more
	if err := os.WriteFile(filepath.Join(src, release.ManifestName), []byte(manifest), 0o644); err != nil {
		f.t.Fatal(err)
	}
	file := filepath.Join(f.t.TempDir(), app+"-"+version+".tar.gz")
	out, err := os.Create(file)
	if err != nil {
		f.t.Fatal(err)
	}
	defer out.Close()
	if _, _, err := release.Build(src, out); err != nil {
		f.t.Fatal(err)
	}
	return file
}

// sign signs file with the fleet's key, which the server trusts (made on first use).
func (f *fleet) sign(file string) {
	f.t.Helper()
	if f.keyDir == "" {
		f.keyDir = f.t.TempDir()
		pub, err := signing.GenerateKeyPair(f.keyDir, "")
		if err != nil {
			f.t.Fatal(err)
		}
		if _, err := f.admin.TrustKey(f.ctx, api.KeyTrust{PublicKey: pub.String()}); err != nil {
			f.t.Fatal(err)
		}
	}
	priv, err := signing.LoadSecretKey(filepath.Join(f.keyDir, signing.SecretKeyFile), "")
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := signing.SignFile(priv, file, "test"); err != nil {
		f.t.Fatal(err)
	}
}

// push builds, signs and pushes app@version; it lands in the first channel.
func (f *fleet) push(app, version string) { f.pushWith(app, version, "") }

// pushWith builds, signs and pushes app@version with more manifest lines.
func (f *fleet) pushWith(app, version, more string) {
	f.t.Helper()
	file := f.bundleWith(app, version, more)
	f.sign(file)
	f.mustFerry("release", "push", file)
}

// events is the whole event log.
func (f *fleet) events() []api.Event {
	f.t.Helper()
	evs, err := f.admin.Events(f.ctx, 0, 10000)
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}
