// Package daemon holds the verbs that run Ferry's long-lived processes: ferry server, ferry
// agent and ferry dev. It is the one package, besides cmd/ferry which adds these verbs to the
// CLI's, that wires the server and the agent.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/cli"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/server"
	"github.com/spf13/cobra"
)

// Server is ferry server: the control plane.
func Server(g cli.Globals) *cobra.Command {
	var cfg server.Config
	var listen, logLevel, publicRate string
	cmd := &cobra.Command{
		Use:   "server --data DIR [--listen ADDR] [--db URL]",
		Short: "Run the control plane",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.DataDir == "" {
				return cli.Usagef("server: --data DIR is required")
			}
			log, err := logger(g, logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			if cfg.PublicRate, err = parseRate(publicRate); err != nil {
				return err
			}
			cfg.Listen = listen
			if cfg.BlobsDir == "" {
				cfg.BlobsDir = g.Getenv("FERRY_BLOBS")
			}
			if cfg.DB == "" {
				cfg.DB = g.Getenv("FERRY_DB")
			}
			if cfg.SMTP == "" {
				cfg.SMTP = g.Getenv("FERRY_SMTP")
			}
			if cfg.SMTPFrom == "" {
				cfg.SMTPFrom = g.Getenv("FERRY_SMTP_FROM")
			}
			if (cfg.SMTP == "") != (cfg.SMTPFrom == "") {
				return cli.Usagef("server: give --smtp HOST:PORT and --smtp-from EMAIL together (or $FERRY_SMTP and $FERRY_SMTP_FROM)")
			}
			server.TuneGC()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return listenError(listen, err)
			}
			srv, err := server.New(cmd.Context(), cfg)
			if err != nil {
				l.Close()
				return err
			}
			if cfg.InsecureHTTP {
				log.Warn("serving plain HTTP (--insecure-http): tokens travel in the clear unless a TLS-terminating proxy is in front")
			}
			if srv.AdminToken != "" {
				log.Info("admin token", "file", cfg.DataDir+"/admin.token")
			}
			if srv.CAFile != "" {
				log.Info("server CA: operators set FERRY_CACERT to it, agents need only their token", "file", srv.CAFile, "pin", srv.CAPin)
			}
			err = srv.Serve(cmd.Context(), l)
			log.Info("stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", "", "directory for the database and admin.token")
	f.StringVar(&listen, "listen", "127.0.0.1:7700", "address to serve the API on")
	f.StringVar(&cfg.DB, "db", "", "database: postgres://USER@HOST/DB, shared by replicas, or sqlite:FILE (default $FERRY_DB, else SQLite in --data)")
	f.StringVar(&cfg.BlobsDir, "blobs", "", "directory of release bundles; replicas share one, on a shared filesystem (default $FERRY_BLOBS, else DATA/blobs)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often agents check in")
	f.DurationVar(&cfg.HeartbeatGrace, "heartbeat-grace", 0, "silence after which a node is down (default 3 × interval)")
	f.DurationVar(&cfg.BlobGCGrace, "blob-gc-grace", time.Hour, "keep a blob no release refers to this long after its last write")
	f.Int64Var(&cfg.MaxBundleSize, "max-bundle-size", 2<<30, "largest bundle a push may send, in bytes")
	f.Int64Var(&cfg.MaxUnpackedSize, "max-unpacked-size", 0, "largest total size of the files a pushed bundle unpacks to, in bytes (default 4 GiB)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&cfg.SMTP, "smtp", "", "mail relay (HOST:PORT) through which sites' contacts are mailed what rollouts ask of them (default $FERRY_SMTP)")
	f.StringVar(&cfg.SMTPFrom, "smtp-from", "", "sender address of those mails (default $FERRY_SMTP_FROM)")
	f.StringSliceVar(&cfg.Advertise, "advertise", nil, "names and addresses agents and operators reach the server by, for its certificate (NAME,...)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate (with its chain) to serve instead of the one the server makes with its own CA")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "key of --tls-cert")
	f.StringVar(&cfg.ClientCA, "client-ca", "", "require agents and operators to present certificates from this CA")
	f.BoolVar(&cfg.InsecureHTTP, "insecure-http", false, "serve plain HTTP, for a TLS-terminating proxy in front")
	f.BoolVar(&cfg.NewAdminToken, "new-admin-token", false, "make a new admin token in DATA/admin.token even if the database holds one (when the only admin.token is lost)")
	f.StringVar(&cfg.ClusterKey, "cluster-key", "", "file of the key that seals the secrets replicas share in the database; copy the first replica's to the others (default DATA/cluster.key)")
	f.StringVar(&publicRate, "public-rate", "20/s", "requests per second each source address may make to the public agent routes")
	f.IntVar(&cfg.PublicBurst, "public-burst", 100, "burst above --public-rate each source address may make")
	f.IntVar(&cfg.MaxFollowers, "max-followers", 16, "event streams one operator token may hold open")
	f.StringVar(&cfg.MetricsToken, "metrics-token", "", "bearer token /metrics requires (default: none, /metrics is public as Prometheus expects)")
	g.DaemonFlags(cmd, nil)
	return cmd
}

// parseRate reads a rate given as "R" or "R/s".
func parseRate(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "/s"), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, cli.Usagef("invalid --public-rate %q: want a positive rate like 20/s", s)
	}
	return v, nil
}

// Agent is ferry agent: the node agent.
func Agent(g cli.Globals) *cobra.Command {
	var cfg agent.Config
	var lbls, logLevel string
	var trust []string
	cmd := &cobra.Command{
		Use:   "agent --server URL --token T --data DIR [--name N] [--labels k=v,...] [--trust PUBKEY ...] [--allow-unsigned]",
		Short: "Run the node agent; it enrolls once, then keeps its identity in --data",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.DataDir == "" {
				return cli.Usagef("agent: --data DIR is required")
			}
			// The agent's --server and --token share names with the operator flags on purpose
			// (PRODUCT.md): DaemonFlags makes them its own, read through g.
			// Only the flags: FERRY_TOKEN holds an operator token, never an enrollment token.
			cfg.Server = g.ServerAddr()
			tok, err := g.FlagToken()
			if err != nil {
				return err
			}
			cfg.Token = tok
			set, err := labels.ParseSet(lbls)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			cfg.Labels = set
			for _, k := range trust {
				text, err := cli.PublicKeyArg("agent --trust", k)
				if err != nil {
					return err
				}
				cfg.TrustedKeys = append(cfg.TrustedKeys, text)
			}
			if cfg.Logger, err = logger(g, logLevel); err != nil {
				return err
			}
			if cfg.ProbeAddress != "" {
				if err := api.CheckProbeHost(cfg.ProbeAddress); err != nil {
					return cli.Usagef("agent --probe-address: %v", err)
				}
			}
			tlsOpts := g.TLSOptions()
			cfg.CACert, cfg.ClientCert, cfg.ClientKey = tlsOpts.CAFile, tlsOpts.CertFile, tlsOpts.KeyFile
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", "", "directory for the node's key, identity and state")
	f.StringVar(&cfg.Name, "name", "", "node name (default: from the hostname)")
	f.StringVar(&lbls, "labels", "", "labels at enrollment, k=v,k=v")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringArrayVar(&trust, "trust", nil, "pin a release-signing public key (file or key; repeatable): releases must verify against a pinned key (default: the keys the server trusts)")
	f.StringVar(&cfg.ProbeAddress, "probe-address", "", "IP address peers reach this node at in mesh probes (default: the local address the agent reaches the server from)")
	f.BoolVar(&cfg.AllowUnsigned, "allow-unsigned", false, "install unsigned releases too (default: only signed ones)")
	g.DaemonFlags(cmd, agentFlags)
	return cmd
}

// agentFlags are the operator's flags the agent reads as its own (through cli.Globals), with
// what they mean to it; "" keeps the operator's text.
var agentFlags = map[string]string{
	"server":      "server URL, or several comma-separated, one per replica (default $FERRY_ADDR or " + cli.DefaultAddr + ")",
	"token":       "enrollment token (from ferry token create --site S); an agent with an identity in --data ignores it",
	"token-file":  "file holding the enrollment token",
	"ca-cert":     "CA file that verifies the server (default $FERRY_CACERT; a server's own CA needs none: the token pins it)",
	"client-cert": "",
	"client-key":  "",
}

// logger makes the structured logger of a long-running verb, on stderr.
func logger(g cli.Globals, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, cli.Usagef("invalid --log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(g.Stderr(), &slog.HandlerOptions{Level: l})), nil
}

// listenError says why the server cannot listen on addr, naming the address once: net's own
// error repeats it ("listen tcp ADDR: bind: …").
func listenError(addr string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return fmt.Errorf("listen on %s: %w", addr, err)
}
