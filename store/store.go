// Package store keeps Ferry's durable state: sites, tokens, nodes and the event log. Every change
// and the events that record it are written in one transaction, so the log never disagrees with
// the state. SQLite is the embedded backend; the Store interface is what other backends implement,
// and storetest holds the suite they all must pass.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Errors a Store returns, wrapped with a message that names the object: what a method names does
// not exist, or what it would insert does already. Deciding what is allowed is the services'.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Store is the durable state of one Ferry control plane: reads, the writes that record no event
// (facts, last-seen times, replicas, spent nonces), and Update, in which the services make every
// change that records one.
//
// Every event written records the actor of the context (ActorFrom: System when the context
// carries none) in its Actor, Role and Source, both in the events returned and in the log
// Events reads.
type Store interface {
	Close() error

	Sites(ctx context.Context) ([]api.Site, error)
	Site(ctx context.Context, name string) (api.Site, error)

	// Token returns the token with this id; callers compare the secret hash.
	Token(ctx context.Context, id string) (TokenRecord, error)
	Tokens(ctx context.Context) ([]TokenRecord, error)

	Nodes(ctx context.Context) ([]api.Node, error)
	// AppCounts counts the nodes that are not revoked by each app, version and state they last
	// reported, in no particular order: the fleet's apps without reading every node.
	AppCounts(ctx context.Context) ([]AppCount, error)
	Node(ctx context.Context, name string) (api.Node, error)
	// NodesNamed reads the named nodes that exist, with their assignments, in one pass whatever
	// their number: what a change to some nodes of a large fleet needs, without reading it all.
	NodesNamed(ctx context.Context, names []string) (map[string]api.Node, error)
	// NodeStates reads the status and app report of the named nodes that exist (of every node
	// when names is nil), and nothing else of them: what the rollout engine follows.
	NodeStates(ctx context.Context, names []string) (map[string]NodeState, error)
	SetFacts(ctx context.Context, name string, f api.Facts) error
	// TouchNodes records last-seen times in one batch.
	TouchNodes(ctx context.Context, seen map[string]time.Time) error
	// ReportReplica records that a server replica is alive and which agent streams it took up
	// and gave up; a stream given up leaves the node with its last-seen time.
	ReportReplica(ctx context.Context, r ReplicaReport) error
	// StreamHolders says, for each named node that exists, which replica holds its stream, when
	// that replica last reported, and when the node was last heard from.
	StreamHolders(ctx context.Context, names []string) (map[string]StreamHolder, error)

	// Keys lists release-signing keys, revoked ones included, oldest first.
	Keys(ctx context.Context) ([]api.SigningKey, error)
	Release(ctx context.Context, app, version string) (api.Release, error)
	// Releases lists releases, of one app when app is not empty.
	Releases(ctx context.Context, app string) ([]api.Release, error)
	// ReferencedBlobs returns the sha256 of every blob some release refers to.
	ReferencedBlobs(ctx context.Context) (map[string]bool, error)
	// Channels lists channels in promotion order with their releases (not candidates: choosing
	// the highest version is the caller's) and, when withHistory, their history.
	Channels(ctx context.Context, withHistory bool) ([]api.Channel, error)

	// Rollout returns one rollout; Rollouts the latest MaxRolloutList of app ("" for all),
	// newest first.
	Rollout(ctx context.Context, id int64) (RolloutRecord, error)
	Rollouts(ctx context.Context, app string) ([]RolloutRecord, error)
	// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id: a
	// read outside any transaction, for overviews (Tx.OpenRollouts is the engine's).
	OpenRollouts(ctx context.Context, app string) ([]RolloutRecord, error)
	// OpenRolloutIDs returns the ids of the rollouts the engine still steps, without reading
	// them.
	OpenRolloutIDs(ctx context.Context) ([]int64, error)

	// Probe returns one mesh probe; Probes the latest MaxProbeList, newest first.
	Probe(ctx context.Context, id int64) (ProbeRecord, error)
	Probes(ctx context.Context) ([]ProbeRecord, error)
	// OpenProbes returns the probes still open, by id: a read outside any transaction, for a
	// replica learning at start which links wait for their agents (Tx.OpenProbes is the
	// engine's).
	OpenProbes(ctx context.Context) ([]ProbeRecord, error)
	// PruneProbes forgets the probes no longer open that were last updated before before, but
	// never one of the newest keep probes (open ones included), and says how many it forgot.
	PruneProbes(ctx context.Context, before time.Time, keep int) (int64, error)

	// Webhooks lists the webhooks, oldest first, each with its cursor and dead-letter count;
	// DeliveryFailures the dead letters of a target (api.WebhookTarget, api.EmailTarget),
	// newest first.
	Webhooks(ctx context.Context) ([]WebhookRecord, error)
	DeliveryFailures(ctx context.Context, target string) ([]api.DeliveryFailure, error)

	// Checks lists the operator checks by name; CheckResults the latest result of every
	// (node, check) by node and check.
	Checks(ctx context.Context) ([]api.CheckSpec, error)
	CheckResults(ctx context.Context) ([]api.NodeCheck, error)
	// WriteChecks writes, in one transaction and recording no event, latest results (each
	// replacing its node's and check's) and history buckets (each replacing its own).
	WriteChecks(ctx context.Context, results []api.NodeCheck, buckets []CheckBucket) error
	// CheckHistory lists the buckets of width of a check on a node that start at or after
	// since, oldest first.
	CheckHistory(ctx context.Context, node, check string, width time.Duration, since time.Time) ([]api.CheckBucket, error)
	// PruneCheckHistory forgets the buckets of width that start before before, and says how
	// many it forgot.
	PruneCheckHistory(ctx context.Context, width time.Duration, before time.Time) (int64, error)
	// Alerts lists the open alerts, or when all every alert, open ones first and then newest
	// first, at most MaxAlertList.
	Alerts(ctx context.Context, all bool) ([]api.Alert, error)

	// Updater runs the services' writes: the rules are theirs, the storage primitives (Tx) the
	// backend's.
	Updater

	// SpendNonce records nonce as spent until expires and returns true, or returns false when
	// it is already spent (and its record has not expired by now). It also forgets the oldest
	// records that expired before now, at most MaxPurgedNonces of them per call (so the log
	// of spent nonces cannot outgrow the rate of spending). An empty nonce or one longer than
	// MaxNonceLen bytes is an error.
	SpendNonce(ctx context.Context, nonce string, expires, now time.Time) (bool, error)
	// Events returns up to limit events with id > since, oldest first.
	Events(ctx context.Context, since int64, limit int) ([]api.Event, error)
	// LastEventID returns the id of the newest event, 0 when there is none.
	LastEventID(ctx context.Context) (int64, error)
	// SubjectEvents returns up to limit of the newest events about subject (a node, say),
	// newest first, read through the events' index by subject.
	SubjectEvents(ctx context.Context, subject string, limit int) ([]api.Event, error)
	// Changed returns a channel that is closed once a write commits after this call: the
	// wake-up that Watch waits on. It may close for writes that appended no event.
	Changed() <-chan struct{}
	// Lead waits until this server is the one that runs the singleton work (the down-node
	// sweep, blob collection): it returns a context that ends when the server stops leading,
	// or an error when ctx ends first. Cancelling ctx gives the lead up.
	Lead(ctx context.Context) (context.Context, error)

	// PutSecret stores value under name unless a value is stored there already, and returns the
	// stored value: callers that put one name at once, on any replica, all get the same value
	// back, and the first stays. The store keeps values as given; the server seals them first,
	// so that reading the database alone opens none.
	PutSecret(ctx context.Context, name string, value []byte) ([]byte, error)
}

// Limits of SpendNonce.
const (
	MaxNonceLen     = 256
	MaxPurgedNonces = 256
)

// TokenRecord is a token as stored: the secret itself is never kept, only its hash.
type TokenRecord struct {
	ID          string
	SecretHash  string
	Kind        string // "enroll" or "operator"
	Site        string
	Role        string
	UsesLeft    *int
	ExpiresAt   *time.Time
	CreatedAt   time.Time
	Description string
}

// Token kinds.
const (
	KindEnroll   = "enroll"
	KindOperator = "operator"
)

// AppCount is how many nodes report an app at a version (empty: none installed yet) in a state
// (empty: none reported).
type AppCount struct {
	App, Version, State string
	Nodes               int
}

// NodeState is a node's status and what its agent last reported of its apps.
type NodeState struct {
	Status string
	Apps   []api.NodeApp
}

// NodeRecord is what enrollment stores about a new node.
type NodeRecord struct {
	Name      string
	PublicKey string
	Labels    map[string]string
	Facts     api.Facts
}
