package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"aead.dev/minisign"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/cli"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/examples/hello"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/signing"
	"github.com/spf13/cobra"
)

// demoSites are real places with real coordinates, over all three tiers.
var demoSites = []client.SiteAdd{
	{Name: "ams", Tier: 1, Lat: ptr(52.3676), Lon: ptr(4.9041), Contact: "noc@ams.example.org"},
	{Name: "gva", Tier: 2, Lat: ptr(46.2044), Lon: ptr(6.1432), Contact: "ops@gva.example.org"},
	{Name: "chi", Tier: 3, Lat: ptr(41.8781), Lon: ptr(-87.6298), Contact: "lab@chi.example.edu"},
	{Name: "tyo", Tier: 2, Lat: ptr(35.6762), Lon: ptr(139.6503), Contact: "infra@tyo.example.jp"},
	{Name: "syd", Tier: 3, Lat: ptr(-33.8688), Lon: ptr(151.2093), Contact: "it@syd.example.edu.au"},
	{Name: "sao", Tier: 1, Lat: ptr(-23.5505), Lon: ptr(-46.6333), Contact: "noc@sao.example.br"},
	{Name: "nbo", Tier: 3, Lat: ptr(-1.2921), Lon: ptr(36.8219), Contact: "admin@nbo.example.ke"},
	{Name: "sea", Tier: 2, Lat: ptr(47.6062), Lon: ptr(-122.3321), Contact: "ops@sea.example.com"},
}

var demoRoles = []string{"mirror", "depot", "testbed"}

func ptr[T any](v T) *T { return &v }

// Dev is ferry dev: a demo fleet in one process.
func Dev(g cli.Globals) *cobra.Command {
	var nAgents, nSites int
	var dataDir, listen string
	cmd := &cobra.Command{
		Use:   "dev [--agents N] [--sites M] [--data DIR] [--listen ADDR]",
		Short: "Run a demo fleet: a server and N real agents over M sites, in one process",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nSites < 1 || nSites > len(demoSites) {
				return cli.Usagef("dev: --sites must be 1 to %d", len(demoSites))
			}
			if nAgents < 0 || nAgents > 1000 {
				return cli.Usagef("dev: --agents must be 0 to 1000")
			}
			return runDev(cmd.Context(), g, nAgents, nSites, dataDir, listen)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nAgents, "agents", 12, "number of agents")
	f.IntVar(&nSites, "sites", 4, "number of demo sites")
	f.StringVar(&dataDir, "data", "", "data directory (default: a fresh temporary one, removed at exit)")
	f.StringVar(&listen, "listen", "127.0.0.1:7700", "address to serve the API on")
	g.DaemonFlags(cmd, nil)
	return cmd
}

func runDev(ctx context.Context, g cli.Globals, nAgents, nSites int, dataDir, listen string) error {
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "ferry-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	log := slog.New(slog.NewTextHandler(g.Stderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("%w (is another ferry running? try --listen 127.0.0.1:0)", listenError(listen, err))
	}
	srv, err := server.New(ctx, server.Config{DataDir: dataDir, Listen: l.Addr().String(), Logger: log.With("part", "server")})
	if err != nil {
		l.Close()
		return err
	}
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(srvCtx, l) }()
	addr := srv.Scheme() + "://" + l.Addr().String()

	c, err := client.New(addr, srv.AdminToken)
	if err != nil {
		return err
	}
	if err := c.UseTLS(pki.ClientOptions{CAFile: srv.CAFile}); err != nil {
		return err
	}
	agents, err := devAgents(ctx, g, c, nAgents, nSites, dataDir, log)
	if err == nil {
		err = devRelease(ctx, c, dataDir)
	}
	if err != nil {
		stopSrv()
		<-srvDone
		return err
	}
	tokenFile := filepath.Join(dataDir, "admin.token")
	fmt.Fprintf(g.Stdout(), `Ferry dev fleet: %d agents over %d sites
  server  %s
  data    %s
  token   %s

Try, in another terminal:
  export FERRY_ADDR=%s FERRY_TOKEN=$(cat %s) FERRY_CACERT=%s
  ferry node list
  ferry release list                                  # hello 1.0.0, 1.1.0 and 1.2.0, signed
  ferry deploy hello@1.0.0 --selector role=mirror --wait   # verified, installed, started
  ferry app status hello
  ferry node show %s
  ferry deploy hello@1.1.0 --selector role=mirror --wait   # fails its health check: rolled back
  ferry deploy hello@1.2.0 --selector role=mirror --wait
  ferry logs %s hello --follow                      # its output, through the server; Ctrl-C ends
  ferry check add root --selector role=mirror --disk / --warn 10%% --crit 5%%
  ferry status                                        # sites, failing checks, open rollouts
  ferry events --follow

Web interface: %s/ (sign in with the token above; the browser does not know this
server's CA: accept its warning, or trust %s)

Ctrl-C stops everything.
`, nAgents, nSites, addr, dataDir, srv.AdminToken, addr, tokenFile, srv.CAFile, demoSites[0].Name+"-01", demoSites[0].Name+"-01", addr, srv.CAFile)

	var wg sync.WaitGroup
	agentCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(agentCtx); err != nil {
				log.Error("agent stopped", "node", a.Name(), "err", err)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-srvDone:
		stopAgents()
		wg.Wait()
		return err
	}
	fmt.Fprintln(g.Stderr(), "stopping agents and server")
	stopAgents()
	wg.Wait()
	stopSrv()
	if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// devAgents makes the demo sites and one agent per node, spreading nodes round-robin over the
// sites. Agents that enrolled in an earlier run with the same --data keep their identity.
func devAgents(ctx context.Context, g cli.Globals, c *client.Client, nAgents, nSites int, dataDir string, log *slog.Logger) ([]*agent.Agent, error) {
	perSite := map[string]int{}
	for i := 0; i < nAgents; i++ {
		perSite[demoSites[i%nSites].Name]++
	}
	tokens := map[string]string{}
	for _, s := range demoSites[:nSites] {
		if _, err := c.AddSite(ctx, s); err != nil && client.StatusOf(err) != http.StatusConflict {
			return nil, fmt.Errorf("add demo site %s: %w", s.Name, err)
		}
		if perSite[s.Name] == 0 {
			continue
		}
		t, err := c.CreateToken(ctx, api.TokenCreate{Site: s.Name, Uses: perSite[s.Name], Description: "ferry dev"})
		if err != nil {
			return nil, fmt.Errorf("enrollment token for %s: %w", s.Name, err)
		}
		tokens[s.Name] = t.Secret
	}
	agentLog := slog.New(slog.NewTextHandler(g.Stderr(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("part", "agent")
	var out []*agent.Agent
	for i := 0; i < nAgents; i++ {
		site := demoSites[i%nSites].Name
		name := fmt.Sprintf("%s-%02d", site, i/nSites+1)
		a, err := agent.New(agent.Config{
			Server:  c.Addr(),
			Token:   tokens[site],
			DataDir: filepath.Join(dataDir, "agents", name),
			Name:    name,
			Labels:  map[string]string{"role": demoRoles[i%len(demoRoles)]},
			Logger:  agentLog,
			// The demo's services go with it: its data directory may be a temporary one.
			StopOnExit: true,
		})
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", name, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// The demo app is examples/hello, run by this very binary (ferry example-hello), so that the
// demo needs no toolchain: dev copies the binary to DATA/demo/bin/ferry, a path that stays put
// across runs with the same --data, and each release's bin/hello execs it. Three releases: 1.0.0
// and 1.2.0 are healthy, 1.1.0 fails its health check, for a rollback to watch.
var demoReleases = []struct{ version, broken string }{{"1.0.0", ""}, {"1.1.0", "health"}, {"1.2.0", ""}}

// demoManifest is the demo app's ferry.yaml at version, broken as HELLO_BROKEN says.
func demoManifest(version, broken string) string {
	env := fmt.Sprintf("      HELLO_VERSION: %q\n", version)
	if broken != "" {
		env += fmt.Sprintf("      HELLO_BROKEN: %q\n", broken)
	}
	return fmt.Sprintf(`app: hello
version: %s
class: minor
ports:
  - name: http
processes:
  - name: web
    command: [bin/hello]
    env:
%schecks:
  - name: healthz
    http: http://127.0.0.1:${FERRY_PORT_HTTP}/healthz
    interval: 2s
    timeout: 2s
update:
  min_healthy_time: 3s
  healthy_deadline: 10s
`, version, env)
}

// devRelease signs the demo app's releases with a key kept in the data directory, has the
// server trust that key and pushes them, so the demo can show a deploy. Re-running with the
// same --data finds them pushed already.
func devRelease(ctx context.Context, c *client.Client, dataDir string) error {
	dir := filepath.Join(dataDir, "demo")
	// The demo directory holds the demo's signing key: only this user may enter it.
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o700); err != nil {
		return err
	}
	ferryBin := filepath.Join(dir, "bin", "ferry")
	if err := copyExecutable(ferryBin); err != nil {
		return fmt.Errorf("copy ferry for the demo app: %w", err)
	}
	keyDir := filepath.Join(dir, "key")
	if _, err := os.Stat(filepath.Join(keyDir, signing.SecretKeyFile)); err != nil {
		if _, err := signing.GenerateKeyPair(keyDir, ""); err != nil {
			return err
		}
	}
	priv, err := signing.LoadSecretKey(filepath.Join(keyDir, signing.SecretKeyFile), "")
	if err != nil {
		return err
	}
	pub, err := os.ReadFile(filepath.Join(keyDir, signing.PublicKeyFile))
	if err != nil {
		return err
	}
	if _, err := c.TrustKey(ctx, api.KeyTrust{PublicKey: string(pub), Comment: "ferry dev demo"}); err != nil && client.StatusOf(err) != http.StatusConflict {
		return fmt.Errorf("trust the demo key: %w", err)
	}
	for _, r := range demoReleases {
		if _, err := c.Release(ctx, "hello", r.version); err == nil {
			continue // pushed by an earlier run with this --data
		}
		src := filepath.Join(dir, "hello-"+r.version)
		if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
			return err
		}
		files := map[string]string{
			release.ManifestName: demoManifest(r.version, r.broken),
			"bin/hello":          "#!/bin/sh\nexec " + shellQuote(ferryBin) + " example-hello\n",
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o755); err != nil {
				return err
			}
		}
		if err := pushDemo(ctx, c, priv, src, filepath.Join(dir, "hello-"+r.version+".tar.gz")); err != nil {
			return fmt.Errorf("push the demo release hello@%s: %w", r.version, err)
		}
	}
	return nil
}

// pushDemo builds src into bundle, signs it and pushes it.
func pushDemo(ctx context.Context, c *client.Client, priv minisign.PrivateKey, src, bundle string) error {
	f, err := os.Create(bundle)
	if err != nil {
		return err
	}
	if _, _, err := release.Build(src, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	sigFile, err := signing.SignFile(priv, bundle, "ferry dev demo")
	if err != nil {
		return err
	}
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		return err
	}
	b, err := os.Open(bundle)
	if err != nil {
		return err
	}
	defer b.Close()
	fi, err := b.Stat()
	if err != nil {
		return err
	}
	_, err = c.PushRelease(ctx, b, fi.Size(), sig)
	return err
}

// copyExecutable copies the running binary to dst (replacing it by a rename, so a demo process
// running the old copy keeps it).
func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ferry-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ExampleHello is the demo app, examples/hello, as a hidden verb of this binary (see devRelease).
func ExampleHello(g cli.Globals) *cobra.Command {
	return &cobra.Command{
		Use:    "example-hello",
		Short:  "Run Ferry's example app (the demo fleet's hello): an HTTP service on $FERRY_PORT_HTTP",
		Hidden: true,
		Args:   cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return hello.Main(cmd.Context(), os.Getenv, g.Stdout())
		},
	}
}
