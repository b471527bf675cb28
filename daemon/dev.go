package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/cli"
	"github.com/ferryhq/ferry/client"
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
  ferry release list                                 # a signed demo release, hello@1.0.0
  ferry deploy hello@1.0.0 --selector role=mirror    # the agents verify it, then install it
  ferry node show %s
  ferry events --follow

Ctrl-C stops everything.
`, nAgents, nSites, addr, dataDir, srv.AdminToken, addr, tokenFile, srv.CAFile, demoSites[0].Name+"-01")

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
		})
		if err != nil {
			return nil, fmt.Errorf("agent %s: %w", name, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// devRelease signs the demo app with a key kept in the data directory, has the server trust
// that key and pushes the bundle, so the demo can show a deploy. Re-running with the same
// --data pushes the same bytes again, which is a no-op.
func devRelease(ctx context.Context, c *client.Client, dataDir string) error {
	dir := filepath.Join(dataDir, "demo")
	src := filepath.Join(dir, "hello")
	// The demo directory holds the demo's signing key: only this user may enter it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		return err
	}
	files := map[string]string{
		release.ManifestName: "app: hello\nversion: 1.0.0\nclass: minor\nprocesses:\n  - name: web\n    command: [\"bin/hello\"]\n",
		"bin/hello":          "#!/bin/sh\necho hello from ferry\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	bundle := filepath.Join(dir, "hello-1.0.0.tar.gz")
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
	sigFile, err := signing.SignFile(priv, bundle, "ferry dev demo")
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
	if _, err := c.PushRelease(ctx, b, fi.Size(), sig); err != nil {
		return fmt.Errorf("push the demo release: %w", err)
	}
	return nil
}
