// Package server is Ferry's control plane: the HTTP API for operators, the agent protocol, the
// failure detector loop and the event stream, over a store.Store.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/assign"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/catalog"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/health"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/liveness"
	"github.com/ferryhq/ferry/notify"
	"github.com/ferryhq/ferry/notify/send"
	"github.com/ferryhq/ferry/overview"
	"github.com/ferryhq/ferry/probe"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/rollout"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
	"github.com/ferryhq/ferry/web"
)

// Config configures a Server.
type Config struct {
	// DataDir holds the database and admin.token.
	DataDir string
	// DB is a database URL: postgres://… for PostgreSQL, which several replicas may share, or
	// sqlite:FILE; empty means SQLite in DataDir.
	DB string
	// BlobsDir holds the release bundles (default DataDir/blobs); replicas share one, on a
	// shared filesystem.
	BlobsDir string
	// Store, when set, is the store to serve instead of the one DB names; the server closes it
	// when it stops.
	Store store.Store
	// HeartbeatInterval is how often agents check in; an idle sync is held this long.
	HeartbeatInterval time.Duration
	// HeartbeatGrace is the silence after which a node is down (default 3 × interval).
	HeartbeatGrace time.Duration
	// MaxBundleSize bounds a pushed bundle (default 2 GiB).
	MaxBundleSize int64
	// MaxUnpackedSize bounds the total size of the files a pushed bundle unpacks to
	// (default release.DefaultMaxUnpacked).
	MaxUnpackedSize int64
	// BlobGCGrace is how long an unreferenced blob is kept after its last write (default 1h).
	BlobGCGrace time.Duration

	// Listen and Advertise are the addresses and names the server is reached by; the
	// certificate it makes for itself carries them.
	Listen    string
	Advertise []string
	// TLSCert and TLSKey are the operator's own certificate (followed by its chain) and key;
	// without them the first replica makes the cluster's CA, kept sealed in the database, and
	// each writes the CA's certificate and a server certificate of its own under DataDir/tls.
	TLSCert, TLSKey string
	// ClientCA, when set, requires agents and operators to present certificates from that CA.
	ClientCA string
	// InsecureHTTP serves plain HTTP, for a TLS-terminating proxy in front.
	InsecureHTTP bool
	// NewAdminToken makes a new admin token (written to DataDir/admin.token) even when the
	// database holds one already: the way back when the only admin.token is lost.
	NewAdminToken bool
	// ClusterKey is the file of the key that seals the secrets replicas share in the database,
	// the one that signs agent sessions and challenges and the CA's key (default
	// DataDir/cluster.key); the first replica makes it, and every other needs a copy.
	ClusterKey string
	// PublicRate and PublicBurst limit requests per source address to the public agent routes
	// (enroll, challenge, session); defaults 20/s and 100.
	PublicRate  float64
	PublicBurst int
	// MaxFollowers bounds the event streams one operator token may hold open (default 16).
	MaxFollowers int
	// ReadTimeout bounds how long a client may take to send a whole request (default 30s);
	// streaming routes lift or stretch it.
	ReadTimeout time.Duration

	// SMTP, when set, is the HOST:PORT of the mail relay through which the leader mails sites'
	// contacts what rollouts ask of them, from SMTPFrom.
	SMTP, SMTPFrom string
	// WebhookTimeout bounds one try of a webhook delivery or of a mail (default 10s).
	WebhookTimeout time.Duration
	// WebhookAttempts is how many tries a webhook delivery or a mail gets before it is a dead
	// letter (default 8).
	WebhookAttempts int
	// MetricsToken, when set, is the bearer token /metrics requires; without it /metrics is
	// public, as Prometheus expects (it carries no secret).
	MetricsToken string

	Clock  clock.Clock
	Logger *slog.Logger
}

// Server is one control-plane process.
type Server struct {
	cfg         Config
	store       store.Store
	inventory   *inventory.Service
	catalog     *catalog.Service
	assign      *assign.Service
	rollouts    *rollout.Service
	overview    *overview.Service
	engine      *rollout.Engine
	probes      *probe.Service
	probeEngine *probe.Engine
	probeOrders *probe.Orders
	webhooks    *notify.Service
	health      *health.Service
	notifier    *notify.Notifier
	blobs       *blobstore.Store
	clk         clock.Clock
	log         *slog.Logger
	secret      []byte
	det         *liveness.Detector
	hub         *hub
	downloading downloads
	metrics     *metrics
	mux         *http.ServeMux
	web         *web.Handler // the browser interface, at every path outside the API's
	routes      []route
	ready       chan struct{}
	// serveCtx is Serve's context: agent streams outlive the request that opened them and end
	// with it; streams counts them so Serve can wait for them before closing the store.
	serveCtx context.Context
	streams  liveStreams
	workers  *workers   // read and handle the streams' frames
	fed      fedTo      // how far the change feed has been applied
	statusMu sync.Mutex // orders the sweep's and heartbeats' status writes
	returns  *returns   // nodes heard again whose return is still to be written
	replica  *replicaState
	leading  atomic.Bool // this replica runs the singleton work now
	poller   *poller     // waits on the streams' connections (Linux)

	tls     *tls.Config
	limits  *addrLimits
	reports *addrLimits // app reports per node
	follows followerCounts
	logs    logRequests // the logs requests made here, waiting for their agents' uploads

	// AdminToken is the admin API token, as written to DataDir/admin.token; empty when another
	// replica made the cluster's admin token (see ensureAdminToken).
	AdminToken string
	// CAPin is the pin enrollment tokens carry (empty over plain HTTP), the same on every
	// replica; CAFile is the certificate of the CA the server made for itself, which operators
	// point FERRY_CACERT at (empty with --tls-cert).
	CAPin, CAFile string
}

// New opens the store, makes the admin token on first start and loads the fleet into memory.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.HeartbeatGrace <= 0 {
		cfg.HeartbeatGrace = 3 * cfg.HeartbeatInterval
	}
	if cfg.HeartbeatGrace <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("--heartbeat-grace (%s) must be longer than --heartbeat-interval (%s)", cfg.HeartbeatGrace, cfg.HeartbeatInterval)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxBundleSize <= 0 {
		cfg.MaxBundleSize = 2 << 30
	}
	if cfg.BlobGCGrace <= 0 {
		cfg.BlobGCGrace = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		return nil, errors.New("--data is required: the directory for the database and admin token")
	}
	if cfg.PublicRate <= 0 {
		cfg.PublicRate = 20
	}
	if cfg.PublicBurst <= 0 {
		cfg.PublicBurst = 100
	}
	if cfg.MaxFollowers <= 0 {
		cfg.MaxFollowers = 16
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.ClusterKey == "" {
		cfg.ClusterKey = filepath.Join(cfg.DataDir, "cluster.key")
	}
	if cfg.BlobsDir == "" {
		cfg.BlobsDir = filepath.Join(cfg.DataDir, "blobs")
		if isPostgres(cfg.DB) {
			cfg.Logger.Warn("--db is PostgreSQL but --blobs is not set: this server keeps bundles in its own data directory, where other replicas cannot serve them; give every replica the same --blobs DIR on a shared filesystem", "blobs", cfg.BlobsDir)
		}
	}
	if err := checkTLSFlags(cfg); err != nil {
		return nil, err
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = 10 * time.Second
	}
	var mailer notify.Mailer
	if cfg.SMTP != "" || cfg.SMTPFrom != "" {
		m, err := send.NewSMTP(cfg.SMTP, cfg.WebhookTimeout)
		if err != nil {
			return nil, err
		}
		if err := send.CheckAddress("--smtp-from", cfg.SMTPFrom); err != nil {
			return nil, err
		}
		mailer = m
	}
	// The data directory holds credentials: only the server's user may enter it.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	clusterKey, madeKey, err := loadClusterKey(cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	st := cfg.Store
	switch {
	case st != nil:
	case cfg.DB == "" || strings.HasPrefix(cfg.DB, "sqlite:"):
		file := strings.TrimPrefix(cfg.DB, "sqlite:")
		if file == "" {
			file = filepath.Join(cfg.DataDir, "ferry.db")
		}
		if err := privateFiles(file, file+"-wal", file+"-shm", file+".lock"); err != nil {
			return nil, err
		}
		s, err := store.OpenSQLite(ctx, file)
		if err != nil {
			return nil, err
		}
		st = s
	case isPostgres(cfg.DB):
		s, err := postgres.Open(ctx, cfg.DB, postgres.WithLogger(cfg.Logger))
		if err != nil {
			// pgx lists each address it tried on a line of its own: one line here.
			return nil, fmt.Errorf("--db: %s", strings.ReplaceAll(err.Error(), "\n\t", "; "))
		}
		st = s
	default:
		return nil, fmt.Errorf("--db %q: want postgres://USER@HOST/DB (several replicas) or sqlite:FILE (the default, in --data)", redactURL(cfg.DB))
	}
	id, err := loadIdentity(ctx, cfg, st, clusterKey)
	var other *otherClusterKeyError
	if errors.As(err, &other) && madeKey {
		// A key made just now for a database that already belongs to a cluster: the operator
		// has not copied the first replica's key here (or mistyped its path). Leave no stray key.
		os.Remove(cfg.ClusterKey)
		err = fmt.Errorf("no cluster key at %s, and the database belongs to a cluster already: copy the first replica's cluster key there (mode 0600), or point --cluster-key at it", cfg.ClusterKey)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	blobs, err := blobstore.OpenAs(cfg.BlobsDir, blobOwner(cfg.DataDir))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("blob store: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		store:   st,
		blobs:   blobs,
		clk:     cfg.Clock,
		log:     cfg.Logger,
		det:     liveness.New(cfg.HeartbeatGrace),
		hub:     newHub(cfg.HeartbeatInterval),
		mux:     http.NewServeMux(),
		ready:   make(chan struct{}),
		returns: newReturns(),
		secret:  id.secret,
		tls:     id.tls,
		CAPin:   id.pin,
		CAFile:  id.caFile,
		limits:  newAddrLimits(cfg.PublicRate, cfg.PublicBurst),
		reports: newAddrLimits(reportRate, reportBurst),
		replica: newReplicaState(cfg.Clock.Now()),
	}
	s.inventory = inventory.New(st, cfg.Clock)
	s.inventory.Removed = health.NodesRemoved
	s.catalog = catalog.New(st, blobs, cfg.Clock, release.Limits{MaxUnpacked: cfg.MaxUnpackedSize}, cfg.Logger)
	s.assign = assign.New(st, cfg.Clock)
	s.rollouts = rollout.NewService(st, cfg.Clock)
	s.engine = rollout.NewEngine(st, cfg.Clock, cfg.Logger)
	s.probes = probe.New(st, cfg.Clock)
	s.probeEngine = probe.NewEngine(st, cfg.Clock, cfg.Logger)
	s.probeOrders = probe.NewOrders(st, cfg.Clock)
	s.webhooks = notify.NewService(st, cfg.Clock, id.key)
	s.notifier = notify.New(notify.Config{Store: st, Clock: cfg.Clock, Log: cfg.Logger, Key: id.key,
		Sender: send.NewHTTP(cfg.WebhookTimeout), Mailer: mailer, From: cfg.SMTPFrom, MaxAttempts: cfg.WebhookAttempts})
	s.health = health.New(health.Config{Store: st, Clock: cfg.Clock, Log: cfg.Logger, Allowed: s.hub.allowsCheck})
	s.overview = overview.New(st, s.rollouts, s.health, cfg.Clock)
	s.metrics = newMetrics(s.overview)
	if s.web, err = s.newWeb(); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.load(ctx); err != nil {
		st.Close()
		return nil, err
	}
	s.routesInit()
	return s, nil
}

func (s *Server) load(ctx context.Context) error {
	if err := s.ensureAdminToken(ctx); err != nil {
		return err
	}
	// The feed starts from the log's end before the nodes are read: a write in between is
	// applied again, which changes nothing.
	last, err := s.store.LastEventID(ctx)
	if err != nil {
		return fmt.Errorf("read the event log: %w", err)
	}
	s.fed.advance(last)
	checks, err := s.store.Checks(ctx)
	if err != nil {
		return fmt.Errorf("load checks: %w", err)
	}
	s.hub.setChecks(checks)
	if err := s.probeOrders.Load(ctx); err != nil {
		return fmt.Errorf("load the probe links under way: %w", err)
	}
	if err := s.health.Load(ctx); err != nil {
		return fmt.Errorf("load check results: %w", err)
	}
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("load nodes: %w", err)
	}
	start := s.clk.Now()
	for _, n := range nodes {
		if n.Status == api.StatusRevoked {
			continue
		}
		s.hub.put(n)
		// Count silence from our own start: the server cannot know what happened while it was away.
		s.det.Track(n.Name, n.Status == api.StatusDown, start)
	}
	return nil
}

// adminTokenDescription describes the admin token a server writes to its admin.token.
const adminTokenDescription = "admin token written to admin.token"

// ensureAdminToken keeps DATA/admin.token valid, making a new admin token when it is missing —
// unless the database holds one made for admin.token already: a cluster has one, written by the
// replica that started first, and operators copy it to the others.
func (s *Server) ensureAdminToken(ctx context.Context) error {
	file := filepath.Join(s.cfg.DataDir, "admin.token")
	invalid := false
	if b, err := os.ReadFile(file); err == nil {
		tok := strings.TrimSpace(string(b))
		if role, err := s.operatorRole(ctx, tok); err == nil && role == api.RoleAdmin {
			s.AdminToken = tok
			return nil
		}
		invalid = true
	}
	now := s.clk.Now()
	secret, id, hash := newToken(prefixOperator)
	made, ev, err := s.inventory.CreateTokenUnless(ctx, store.TokenRecord{ID: id, SecretHash: hash, Kind: store.KindOperator,
		Role: api.RoleAdmin, CreatedAt: now, Description: adminTokenDescription}, func(t store.TokenRecord) bool {
		return !s.cfg.NewAdminToken && t.Kind == store.KindOperator && t.Role == api.RoleAdmin && t.Description == adminTokenDescription && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
	})
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if made != nil {
		why := "no admin.token here"
		if invalid {
			why = "admin.token is not a valid admin token here"
		}
		s.log.Warn(why+", and the database holds the admin token another server (or an earlier start) wrote to its admin.token: copy that file here, or start once with --new-admin-token to make a new one", "file", file, "token", made.ID)
		return nil
	}
	if invalid {
		s.log.Warn("admin.token was not a valid admin token here; made a new one", "file", file)
	}
	s.log.Info("event", "id", ev.ID, "type", ev.Type, "subject", ev.Subject)
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	s.AdminToken = secret
	return nil
}

func (s *Server) routesInit() {
	s.handle("GET /healthz", public, s.healthz)
	s.handle("GET /readyz", public, s.readyz)
	s.handle("GET /metrics", scraper, s.serveMetrics)

	s.handle("GET /v1/sites", viewer, s.listSites)
	s.handle("POST /v1/sites", admin, s.addSite)
	s.handle("GET /v1/sites/{name}", viewer, s.showSite)
	s.handle("DELETE /v1/sites/{name}", admin, s.removeSite)
	s.handle("POST /v1/sites/{name}/labels", admin, s.labelSite)

	s.handle("GET /v1/tokens", admin, s.listTokens)
	s.handle("POST /v1/tokens", admin, s.createToken)
	s.handle("DELETE /v1/tokens/{id}", admin, s.revokeToken)

	s.handle("GET /v1/nodes", viewer, s.listNodes)
	s.handle("GET /v1/nodes/{name}", viewer, s.showNode)
	s.handle("DELETE /v1/nodes/{name}", admin, s.removeNode)
	s.handle("POST /v1/nodes/{name}/labels", admin, s.labelNode)
	s.handle("GET /v1/nodes/{name}/logs", admin, s.nodeLogs) // logs can hold secrets
	s.handle("POST /v1/labels", admin, s.labelNodes)

	s.handle("GET /v1/keys", viewer, s.listKeys)
	s.handle("POST /v1/keys", admin, s.trustKey)
	s.handle("DELETE /v1/keys/{id}", admin, s.revokeKey)

	s.handle("POST /v1/releases", admin, s.pushRelease)
	s.handle("GET /v1/releases", viewer, s.listReleases)
	s.handle("GET /v1/releases/{app}/{version}", viewer, s.showRelease)
	s.handle("POST /v1/releases/{app}/{version}/promote", admin, s.promoteRelease)
	s.handle("POST /v1/releases/{app}/{version}/withdraw", admin, s.withdrawRelease)
	s.handle("POST /v1/releases/{app}/{version}/republish", admin, s.republishRelease)
	s.handle("GET /v1/blobs/{digest}", reader, s.getBlob)
	s.handle("GET /v1/channels", viewer, s.listChannels)
	s.handle("GET /v1/channels/{name}", viewer, s.showChannel)
	s.handle("POST /v1/channels", admin, s.createChannel)
	s.handle("PATCH /v1/channels/{name}", admin, s.setChannel)
	s.handle("GET /v1/bulletin", viewer, s.bulletin)
	s.handle("POST /v1/deploy", admin, s.deploy)
	s.handle("POST /v1/undeploy", admin, s.undeploy)
	s.handle("POST /v1/apps/control", admin, s.controlApp)

	s.handle("POST /v1/rollouts/plan", viewer, s.planRollout)
	s.handle("POST /v1/rollouts/rehearse", viewer, s.rehearseRollout)
	s.handle("POST /v1/rollouts", admin, s.startRollout)
	s.handle("GET /v1/rollouts", viewer, s.listRollouts)
	s.handle("GET /v1/rollouts/{id}", viewer, s.showRollout)
	s.handle("POST /v1/rollouts/{id}/{action}", admin, s.actOnRollout)
	s.handle("GET /v1/policies", viewer, s.listPolicies)
	s.handle("GET /v1/policies/{name}", viewer, s.showPolicy)

	s.handle("GET /v1/events", viewer, s.listEvents)
	s.handle("GET /v1/status", viewer, s.status)

	s.handle("POST /v1/probes", admin, s.startProbe)
	s.handle("GET /v1/probes", viewer, s.listProbes)
	s.handle("GET /v1/probes/{id}", viewer, s.showProbe)

	s.handle("POST /v1/webhooks", admin, s.addWebhook)
	s.handle("GET /v1/webhooks", admin, s.listWebhooks)
	s.handle("DELETE /v1/webhooks/{id}", admin, s.removeWebhook)
	s.handle("GET /v1/webhooks/{id}/failures", admin, s.webhookFailures)
	s.handle("POST /v1/webhooks/{id}/retry", admin, s.retryWebhook)

	s.handle("GET /v1/checks", viewer, s.listChecks)
	s.handle("POST /v1/checks", admin, s.addCheck)
	s.handle("DELETE /v1/checks/{name}", admin, s.removeCheck)
	s.handle("GET /v1/checks/{name}/history", viewer, s.checkHistory)
	s.handle("GET /v1/alerts", viewer, s.listAlerts)
	s.handle("POST /v1/alerts/{id}/ack", admin, s.ackAlert)

	s.handle("POST /v1/agent/enroll", agentEnroll, s.agentEnroll)
	s.handle("POST /v1/agent/challenge", agentEnroll, s.agentChallenge)
	s.handle("POST /v1/agent/session", agentEnroll, s.agentSession)
	s.handle("GET /v1/agent/keys", agentSession, s.agentKeys)
	s.handle("GET /v1/agent/stream", agentSession, s.agentStream)
	s.handle("POST /v1/agent/logs/{id}", agentSession, s.agentLogs)
	s.handle("POST /v1/agent/probes/{id}/links/{link}/listening", agentSession, s.agentProbeListening)
	s.handle("POST /v1/agent/probes/{id}/links/{link}/result", agentSession, s.agentProbeResult)

	// Every other path is the browser's, but for the API's own prefix.
	s.mux.HandleFunc("/v1/", notFoundAPI)
	s.mux.Handle("/", s.web)
}

// Handler serves the whole API and the browser interface; every response carries the browser's
// security headers, even the mux's own redirects.
func (s *Server) Handler() http.Handler { return web.Secure(s.mux) }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	select {
	case <-s.ready:
	default:
		return errorf(http.StatusServiceUnavailable, "starting")
	}
	if _, err := s.store.Events(r.Context(), 1<<62, 1); err != nil {
		return errorf(http.StatusServiceUnavailable, "store unavailable: %v", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// Serve runs the server on l until ctx ends, then shuts down gracefully and closes the store.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	l = pollListener{l}
	if s.tls != nil {
		l = tls.NewListener(l, s.tls)
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A whole request, body included, must arrive within this; the routes that stream
		// (agent streams, event followers, pushes) lift or stretch it themselves.
		ReadTimeout: s.cfg.ReadTimeout,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	s.serveCtx = ctx
	s.workers = startWorkers()
	var err error
	pollBuf := make([]byte, readBuffer) // the poller's own, for pollQuick
	if s.poller, err = newPoller(func(as *agentStream) { s.pollQuick(as, pollBuf) }); err != nil {
		s.workers.stop()
		return err
	}
	loops, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); s.followFeed(loops, s.fed.at()) }()
	go func() { defer wg.Done(); s.returnLoop(loops) }()
	go func() { defer wg.Done(); s.leadLoop(loops) }()
	go func() { defer wg.Done(); s.sweepLoop(loops) }()
	go func() { defer wg.Done(); s.flushLoop(loops) }()
	close(s.ready)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	s.log.Info("serving", "addr", l.Addr().String(), "db", s.storeName(), "blobs", s.cfg.BlobsDir, "tls", s.tls != nil, "client_certs", s.cfg.ClientCA != "", "heartbeat_interval", s.cfg.HeartbeatInterval, "heartbeat_grace", s.cfg.HeartbeatGrace)
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hs.Shutdown(sctx) // held syncs and event streams end with the base context
		cancel()
	}
	stop()
	wg.Wait()
	s.hub.endStreams()
	for _, as := range s.streams.wait(streamsGrace) {
		// Its reader never learnt the stream was ended: a bug, but not one to hang on.
		s.log.Warn("agent stream still open after it was ended; closing it", "node", as.node, "polled", as.id != 0, "reading", as.reading.Load())
		s.finish(as)
	}
	s.streams.wg.Wait()
	s.poller.stop()
	s.workers.stop()
	s.flush(context.Background())
	if err := s.health.FlushAll(context.Background()); err != nil {
		s.log.Warn("write check results at stop", "err", err)
	}
	s.report(context.Background())
	if cerr := s.store.Close(); err == nil || errors.Is(err, http.ErrServerClosed) {
		err = cerr
	}
	return err
}

// sweepLoop judges silent nodes at their deadline (Sweep), but no more often than a few times
// per grace period: each pass scans every node, and deadlines spread over time (nodes that
// another replica vouches for, say) would otherwise wake it for a node or two at a time.
func (s *Server) sweepLoop(ctx context.Context) {
	floor := min(time.Second, s.cfg.HeartbeatGrace/8)
	for {
		wait := time.Second
		if dl := s.det.NextDeadline(); !dl.IsZero() {
			if d := dl.Sub(s.clk.Now()); d < wait {
				wait = max(d, floor)
			}
		}
		if !s.sleep(ctx, wait) {
			return
		}
		s.Sweep(ctx)
	}
}

// leadLoop runs the singleton work, marking silent nodes down and blob collection, while this
// server leads, and waits to lead again when it stops (with several replicas, one leads at a
// time). A replica that takes the lead counts every node's silence from then (retrack): it has
// not heard the agents of the replica it takes over from, which may be looking for another.
func (s *Server) leadLoop(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		lead, err := s.store.Lead(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("wait to lead; retrying", "err", err, "retry_in", wait)
				s.sleep(ctx, wait)
				wait = min(2*wait, 30*time.Second)
			}
			continue
		}
		wait = time.Second
		s.log.Info("leading: this server marks silent nodes down, collects blobs, moves rollouts on and delivers notifications", "replica", s.replica.id)
		if err := s.retrack(lead); err != nil {
			if ctx.Err() == nil {
				s.log.Error("read the nodes to lead; retrying", "err", err)
				s.sleep(ctx, time.Second)
			}
			continue
		}
		s.leading.Store(true)
		var singletons sync.WaitGroup
		singletons.Add(3)
		go func() { defer singletons.Done(); s.engine.Run(lead) }()
		go func() { defer singletons.Done(); s.probeEngine.Run(lead) }()
		go func() { defer singletons.Done(); s.notifier.Run(lead) }()
		s.gcLoop(lead)
		singletons.Wait() // one engine and one notifier at a time, even when the lead comes back at once
		s.leading.Store(false)
	}
}

// retrack starts the detector afresh from the store, as load does at start: the nodes the
// store holds up get a grace period from now. Before it led, this replica swept only its own
// streams and took every other node for silent.
func (s *Server) retrack(ctx context.Context) error {
	nodes, err := s.store.Nodes(ctx)
	if err != nil {
		return err
	}
	now := s.clk.Now()
	for _, n := range nodes {
		if n.Status != api.StatusRevoked {
			s.det.Track(n.Name, n.Status == api.StatusDown, now)
		}
	}
	return nil
}

// sleep waits d on the server's clock; false when ctx ends first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool { return clock.Sleep(ctx, s.clk, d) }

// setStatus records that a node is up or down, when the detector still says so: the sweep
// works through many nodes, and one may speak again before its turn, so the store must end
// with the detector's latest word. A node marked down also loses its stream, which carries
// nothing. The feed brings the new status to the hub.
func (s *Server) setStatus(ctx context.Context, name, status string) {
	judged := s.clk.Now()
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if down, known := s.det.Down(name); !known || down != (status == api.StatusDown) {
		return
	}
	if _, _, err := s.inventory.SetStatus(ctx, name, status); err != nil && !errors.Is(err, fault.ErrNotFound) {
		s.log.Error("record node status", "node", name, "status", status, "err", err)
	}
	if status == api.StatusDown {
		// Not a stream the node opened after it was judged down: it may have come back
		// while the store was written, and the store is written again for that.
		s.hub.endStream(name, judged)
	}
}

// flushLoop reports this replica's streams once per heartbeat interval (report), and persists
// last-seen times in batches at most once a minute: they matter only after a restart or to
// another replica's sweep (live reads take them from the detector), and writing every node's
// row every interval would cost more than the heartbeats themselves.
func (s *Server) flushLoop(ctx context.Context) {
	every := max(1, int(time.Minute/s.cfg.HeartbeatInterval))
	s.report(ctx)
	for i := 1; ; i++ {
		t := s.clk.NewTimer(s.cfg.HeartbeatInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		s.report(ctx)
		s.flushChecks(ctx)
		if i%every == 0 {
			s.flush(ctx)
		}
	}
}

// flush persists the last-seen times heard since the last flush.
func (s *Server) flush(ctx context.Context) {
	if err := s.store.TouchNodes(ctx, s.det.TakeSeen()); err != nil {
		s.log.Warn("persist last-seen times", "err", err)
	}
}

// flushChecks writes the check results and history buckets due, in one batch, once per
// heartbeat interval (health.Service.Flush says what a crash can lose).
func (s *Server) flushChecks(ctx context.Context) {
	if err := s.health.Flush(ctx); err != nil {
		s.log.Warn("write check results; writing them with the next batch", "err", err)
	}
}

// GCPercent is the collector's target a server process runs with unless GOGC says otherwise:
// the heap may grow to 1.5× what is live instead of Go's 2×. A server's heap is mostly its
// agents' connections, which live as long as the agents do, and it allocates little per
// heartbeat, so collecting more often costs little CPU and saves a quarter of the memory.
const GCPercent = 50

// TuneGC sets the process's collector target to GCPercent unless GOGC is set. The commands
// that run a server call it; a library must not.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(GCPercent)
	}
}

// storeName says which database the server uses, for its log: the SQLite file, or the
// PostgreSQL URL without its password.
func (s *Server) storeName() string {
	switch {
	case s.cfg.Store != nil:
		return fmt.Sprintf("%T", s.cfg.Store)
	case isPostgres(s.cfg.DB):
		return redactURL(s.cfg.DB)
	case s.cfg.DB != "":
		return s.cfg.DB
	}
	return "sqlite:" + filepath.Join(s.cfg.DataDir, "ferry.db")
}

// redactURL drops the password from a database URL, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// blobOwner names this replica in the blob directory it may share with others: the same at
// every start of the same data directory on the same host, so a replica killed mid-upload
// clears what it left when it starts again, and never another's live upload.
func blobOwner(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	host, _ := os.Hostname()
	sum := sha256.Sum256([]byte(host + "\x00" + abs))
	return hex.EncodeToString(sum[:6])
}

// isPostgres reports whether a --db URL names a PostgreSQL database.
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}
