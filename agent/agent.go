// Package agent is the process on every node: it enrolls once with a one-off token, keeps its
// own key pair, heartbeats, receives the node's desired state by long poll, installs the
// releases assigned to the node after verifying them again, and runs them: it supervises their
// processes, verifies a new release's health and rolls back one that fails. It talks to the server only through
// the client package and keeps working while the server is away.
package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/check"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/signing"
)

// Config configures an Agent.
type Config struct {
	// Server is the server's address, or several comma-separated (one per replica): the agent
	// moves to the next when one cannot be reached.
	Server  string
	Token   string // enrollment token; ignored once the agent has an identity
	DataDir string
	Name    string            // node name; default: derived from the hostname
	Labels  map[string]string // labels given at enrollment
	Clock   clock.Clock
	Logger  *slog.Logger
	// Protocol overrides the protocol version spoken (tests of version skew); 0 means current.
	Protocol int
	// TrustedKeys pins the minisign public keys (base64, or the text of a .pub file) that
	// release signatures must verify against. Without any, the agent trusts the keys the server
	// trusts; either way a key the server lists as revoked is not trusted.
	TrustedKeys []string
	// AllowUnsigned lets the agent install unsigned releases (from allow_unsigned channels).
	AllowUnsigned bool
	// CACert verifies the server against this CA file (operator PKI) instead of the system's
	// roots; the CA pin an enrollment token carries is checked as well.
	CACert string
	// ClientCert and ClientKey are the node's certificate for servers that require one.
	ClientCert, ClientKey string
	// Fault, when set, is called before each step of an app's install (the names Steps
	// returns); an error stops the install there, as if the agent had died, and the next agent
	// on the data directory goes on from that step. Tests use it to crash the agent between
	// any two steps.
	Fault func(app, step string) error
	// StopOnExit stops the apps' processes when Run returns, instead of leaving them running
	// for the next agent to adopt: for a demo fleet whose data goes with it.
	StopOnExit bool
	// PortClaimDir is where the agents of this machine claim the ports they give apps (default
	// ferry-ports in the temporary directory); agents that should not see each other's claims
	// may be given their own.
	PortClaimDir string
	// ProbeAddress is the IP address the agent states its peers reach its mesh-probe
	// listeners at (api.CheckProbeHost); default: the local address it reaches the server
	// from. Set it where that is not the one peers can reach (a 1:1 NAT, say).
	ProbeAddress string
	// Frames, when set, is called with each frame the agent has sent on its stream, from the
	// stream's goroutine: tests read the check results the frames carry.
	Frames func(api.Sync)
}

// Agent is one node's agent.
type Agent struct {
	cfg   Config
	caPin string // the server CA's pin, from the enrollment token
	clk   clock.Clock
	log   *slog.Logger
	key   ed25519.PrivateKey
	pub   string
	api   *client.Client

	inst   *installer
	checks *check.Runner
	claims *portClaims // the ports this agent gave, kept from the machine's other agents

	// runMu guards runs and failed, which the reconcile goroutine writes and the report reads.
	runMu sync.Mutex
	runs  map[string]*appRun
	// failed remembers, per app, the assignment that last failed to download or unpack and
	// why; one that failed for good is not retried until the assignment changes.
	failed map[string]failure

	mu      sync.Mutex
	id      *identity
	desired api.Desired
	changed chan struct{}
	session api.Session
	// freshSession is set until the first sync of a new session succeeds: that sync carries
	// the facts and the full app report.
	freshSession bool
	// report is the app report the server should have; reportDirty says it may not yet.
	report      []api.NodeApp
	reportVer   int
	reportDirty bool
	reported    chan struct{} // closed and replaced when the report changes
	poke        chan struct{} // cuts a held sync short to send a new report or check results
	// checkQueue holds the check results not yet sent.
	checkQueue checkQueue
	// online is closed once the agent first holds a session: installs wait for it, since
	// fetching keys and blobs needs one.
	online     chan struct{}
	onlineOnce sync.Once
	// reconnected wakes a reconcile that waits to retry: the server answers again, so try now.
	reconnected chan struct{}
	// logUploads counts the logs uploads under way (serveLogs).
	logUploads atomic.Int32
	// probes counts the mesh probe links under way (serveProbe), and probing holds them
	// (api.ProbeLinkRef), so that an order the server repeats does not run twice.
	probes  atomic.Int32
	probing sync.Map
}

type failure struct {
	assignment api.Assignment
	err        string
	final      bool // retrying the same assignment cannot help
}

// New prepares an agent: it loads or makes the node key and any earlier identity.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("--data is required: the directory for the node's key and state")
	}
	if cfg.ProbeAddress != "" {
		if err := api.CheckProbeHost(cfg.ProbeAddress); err != nil {
			return nil, fmt.Errorf("--probe-address: %w", err)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	key, err := loadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	id, err := loadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	server := cfg.Server
	if id != nil && server == "" {
		server = id.Server
	}
	c, err := client.New(server, "")
	if err != nil {
		return nil, err
	}
	// The CA pin comes with the enrollment token and is kept with the identity, so the agent
	// trusts exactly the CA of the server it enrolled with, from its first byte on.
	var pin string
	switch {
	case id != nil:
		pin = id.CAPin
	case cfg.Token != "":
		cred, p, err := api.SplitEnrollToken(cfg.Token)
		if err != nil {
			return nil, fmt.Errorf("--token: %v", err)
		}
		cfg.Token, pin = cred, p
	}
	if err := c.UseTLS(pki.ClientOptions{CAFile: cfg.CACert, Pin: pin, CertFile: cfg.ClientCert, KeyFile: cfg.ClientKey}); err != nil {
		return nil, err
	}
	if cfg.Protocol != 0 {
		c.Protocol = cfg.Protocol
	}
	c.Clock = cfg.Clock
	var pinned []minisign.PublicKey
	for _, k := range cfg.TrustedKeys {
		pub, err := signing.ParsePublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("--trust: %v", err)
		}
		pinned = append(pinned, pub)
	}
	a := &Agent{cfg: cfg, clk: cfg.Clock, key: key, api: c, id: id, changed: make(chan struct{}), caPin: pin,
		pub:    base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		failed: map[string]failure{}, poke: make(chan struct{}, 1), online: make(chan struct{}),
		reconnected: make(chan struct{}, 1), runs: map[string]*appRun{}, reported: make(chan struct{}), checks: check.NewRunner(cfg.Clock)}
	claimDir := cfg.PortClaimDir
	if claimDir == "" {
		claimDir = defaultClaimDir()
	}
	a.claims = newPortClaims(claimDir, a.log.Warn)
	a.inst = &installer{dir: cfg.DataDir, api: c, session: a.sessionToken, pinned: pinned,
		allowUnsigned: cfg.AllowUnsigned, clk: cfg.Clock}
	if id == nil {
		if cfg.Token == "" {
			return nil, errors.New("this agent is not enrolled yet: pass --token with an enrollment token (ferry token create --site SITE)")
		}
		if a.cfg.Name == "" {
			a.cfg.Name = defaultName()
		}
		if err := labels.CheckName("node name", a.cfg.Name); err != nil {
			return nil, err
		}
		if err := labels.Set(cfg.Labels).Validate(); err != nil {
			return nil, err
		}
	}
	var d api.Desired
	if err := readJSON(filepath.Join(cfg.DataDir, desiredFile), &d); err == nil {
		a.desired = d
	}
	a.log = cfg.Logger.With("node", a.Name())
	a.inst.log = a.log
	a.setReport(a.observe(a.desired))
	return a, nil
}

// PublicKey is the node's ed25519 public key, base64.
func (a *Agent) PublicKey() string { return a.pub }

func (a *Agent) sessionToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.session.Token
}

// Name is the node's name (known before enrollment too).
func (a *Agent) Name() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.id != nil {
		return a.id.Node
	}
	return a.cfg.Name
}

// Desired returns the newest desired state the agent holds and a channel closed when it changes.
func (a *Agent) Desired() (api.Desired, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.desired, a.changed
}

// signalReconnected tells a reconcile waiting to retry that the server answers again.
func (a *Agent) signalReconnected() {
	select {
	case a.reconnected <- struct{}{}:
	default:
	}
}

// fatalError ends Run: retrying cannot help.
type fatalError struct{ error }

// Run enrolls if needed, then syncs until ctx ends. Network failures and server restarts are
// retried with backoff and jitter; only a refused enrollment ends it.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer a.claims.close() // last: a service still starting keeps its port claimed until then
	defer a.closeApps()    // once reconcile is done: the processes go on running, to be adopted
	wg.Add(2)
	go func() { defer wg.Done(); a.reconcile(ctx) }()
	go func() { defer wg.Done(); a.runNodeChecks(ctx) }()
	defer wg.Wait()
	defer cancel()
	bo := backoff{clk: a.clk, min: 200 * time.Millisecond, max: 30 * time.Second}
	failing := false
	// answered is called whenever the server answers: a new session, or the first answer on
	// a stream.
	answered := func() {
		if failing {
			a.signalReconnected()
		}
		failing = false
		bo.reset()
	}
	for ctx.Err() == nil {
		err := a.step(ctx, answered)
		if err == nil {
			answered()
			continue
		}
		failing = true
		if ctx.Err() != nil {
			break
		}
		var fe fatalError
		if errors.As(err, &fe) {
			return fe.error
		}
		// A session outlives a broken stream and a server away (tokens hold across restarts
		// and replicas): the agent reconnects with it while it is valid, and opens a new one
		// only when the server refuses it. A new session on every reconnect costs two more
		// round trips, which on a long link that breaks often is most of the way back.
		if client.StatusOf(err) == http.StatusUnauthorized {
			a.mu.Lock()
			a.session = api.Session{}
			a.mu.Unlock()
		}
		wait := bo.next()
		var pinErr *pki.PinError
		// A server that cannot be reached or is going away: with several addresses (one per
		// replica), the next attempt goes to the next one.
		if code := client.StatusOf(err); (code == 0 && !errors.As(err, &pinErr)) || code == http.StatusBadGateway ||
			code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout {
			if failed := a.api.Addr(); a.api.Failover() {
				a.log.Warn("server address failing; trying the next", "failed", failed, "next", a.api.Addr())
			}
		}
		// A token made by another server carries its CA's pin: this server will never match it.
		a.mu.Lock()
		enrolled := a.id != nil
		a.mu.Unlock()
		if errors.As(err, &pinErr) && !enrolled {
			return fmt.Errorf("the enrollment token was made by another server: the server at %s does not hold the CA the token pins; make a token on that server (ferry token create --site SITE)", a.api.Addr())
		}
		switch client.StatusOf(err) {
		case 0:
			if errors.As(err, &pinErr) {
				a.log.Error("refusing the server: its certificate chain does not hold the CA pinned at enrollment; if the server's CA was replaced on purpose, enroll this node again", "err", err, "retry_in", wait.Round(time.Millisecond))
			} else {
				a.log.Warn("server unreachable or failing; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
			}
		case http.StatusUpgradeRequired:
			// The server speaks other protocol versions: say so, and retry slowly in case it is
			// upgraded or downgraded to meet us.
			wait = time.Minute
			a.log.Error("server refuses this agent's protocol version; retrying in a minute", "err", err)
		case http.StatusTooManyRequests:
			// A site behind one address, all reconnecting at once: wait as long as the server
			// asks, spread by the backoff's jitter.
			wait += client.RetryAfterOf(err)
			a.log.Warn("server asks to slow down; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		case http.StatusUnauthorized:
			a.log.Warn("not authorized; will open a new session", "err", err, "retry_in", wait.Round(time.Millisecond))
		default:
			a.log.Warn("server unreachable or failing; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		if !clock.Sleep(ctx, a.clk, wait) {
			break
		}
	}
	return nil
}

// step does the next thing the agent needs: enroll, open a session, or hold a stream, calling
// answered when the stream has its first answer.
func (a *Agent) step(ctx context.Context, answered func()) error {
	a.mu.Lock()
	id, sess := a.id, a.session
	a.mu.Unlock()
	if id == nil {
		return a.enroll(ctx)
	}
	if sess.Token == "" || !a.clk.Now().Add(time.Minute).Before(sess.ExpiresAt) {
		s, err := a.openSession(ctx, id.Node)
		if client.StatusOf(err) == http.StatusForbidden {
			return fatalError{fmt.Errorf("this node may no longer talk to the server: %w", err)}
		}
		if err != nil {
			return err
		}
		// Renew by this node's clock, which need not agree with the server's.
		if s.ExpiresIn > 0 {
			s.ExpiresAt = a.clk.Now().Add(time.Duration(s.ExpiresIn))
		}
		a.mu.Lock()
		a.session, a.freshSession = s, true
		a.mu.Unlock()
		a.onlineOnce.Do(func() { close(a.online) })
		return nil
	}
	a.mu.Lock()
	fresh := a.freshSession
	a.mu.Unlock()
	return a.stream(ctx, sess, fresh, answered)
}

func (a *Agent) enroll(ctx context.Context) error {
	name := a.cfg.Name
	req := api.Enroll{Token: a.cfg.Token, Name: name, PublicKey: a.pub, Labels: a.cfg.Labels, Facts: gatherFacts(a.cfg.DataDir)}
	req.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(a.key, api.EnrollMessage(req.Token, name, a.pub)))
	res, err := a.api.Enroll(ctx, req)
	switch code := client.StatusOf(err); {
	case err == nil:
	case code == http.StatusConflict:
		// Our key may already be enrolled: an earlier attempt committed but its answer was lost.
		if _, serr := a.openSession(ctx, name); serr == nil {
			res = api.Enrolled{Node: name}
			break
		}
		return fatalError{fmt.Errorf("enrollment refused: %w", err)}
	case code == http.StatusUnauthorized || code == http.StatusBadRequest || code == http.StatusNotFound:
		return fatalError{fmt.Errorf("enrollment refused: %w", err)}
	default:
		return err
	}
	id := &identity{Node: res.Node, Site: res.Site, Server: a.api.Addrs(), PublicKey: a.pub, CAPin: a.caPin, EnrolledAt: a.clk.Now().UTC()}
	if err := saveJSON(filepath.Join(a.cfg.DataDir, identityFile), id); err != nil {
		return fatalError{fmt.Errorf("save identity: %w", err)}
	}
	a.mu.Lock()
	a.id = id
	a.mu.Unlock()
	a.log.Info("enrolled", "site", res.Site)
	return nil
}

func (a *Agent) openSession(ctx context.Context, node string) (api.Session, error) {
	ch, err := a.api.Challenge(ctx, node)
	if err != nil {
		return api.Session{}, err
	}
	sig := ed25519.Sign(a.key, api.SessionMessage(node, ch.Nonce))
	return a.api.Session(ctx, api.SessionRequest{Node: node, Nonce: ch.Nonce, Signature: base64.StdEncoding.EncodeToString(sig)})
}

func (a *Agent) apply(d api.Desired) {
	a.mu.Lock()
	if d.Generation == a.desired.Generation {
		a.mu.Unlock()
		return
	}
	a.desired = d
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	if err := saveJSON(filepath.Join(a.cfg.DataDir, desiredFile), d); err != nil {
		a.log.Error("save desired state", "err", err)
	}
	a.log.Info("desired state", "generation", d.Generation, "labels", labels.Set(d.Labels).String())
}

// backoff is exponential with jitter: each wait is drawn from [d/2, d), d doubling to max.
type backoff struct {
	clk      clock.Clock
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
