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

// Errors a Store returns, wrapped with a message that names the object.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("conflict")
	// ErrTokenInvalid covers unknown, expired, used-up and revoked tokens alike.
	ErrTokenInvalid = errors.New("token invalid")
)

// Store is the durable state of one Ferry control plane.
//
// Every event a method writes records the actor of the method's context (ActorFrom: System
// when the context carries none) in its Actor, Role and Source, both in the events the method
// returns and in the log Events reads.
type Store interface {
	Close() error

	CreateSite(ctx context.Context, s api.Site) (api.Event, error)
	Sites(ctx context.Context) ([]api.Site, error)
	Site(ctx context.Context, name string) (api.Site, error)
	// DeleteSite removes a site. With nodes that are not revoked it fails with ErrConflict,
	// unless force is set, in which case those nodes are revoked and removed with it.
	DeleteSite(ctx context.Context, name string, force bool, now time.Time) ([]api.Event, error)

	CreateToken(ctx context.Context, t TokenRecord) (api.Event, error)
	// OperatorToken returns the operator token with this id; callers compare the secret hash.
	Token(ctx context.Context, id string) (TokenRecord, error)
	Tokens(ctx context.Context) ([]TokenRecord, error)
	DeleteToken(ctx context.Context, id string, now time.Time) (api.Event, error)

	// EnrollNode spends one use of the enrollment token (checked against secretHash and now)
	// and records the node in the token's site. A name held by a revoked node is taken over.
	EnrollNode(ctx context.Context, tokenID, secretHash string, n NodeRecord, now time.Time) (api.Node, api.Event, error)
	Nodes(ctx context.Context) ([]api.Node, error)
	Node(ctx context.Context, name string) (api.Node, error)
	// SetNodeStatus moves a node between up and down; it is a no-op (no event) when unchanged.
	SetNodeStatus(ctx context.Context, name, status string, now time.Time) (api.Event, bool, error)
	RevokeNode(ctx context.Context, name string, now time.Time) (api.Event, error)
	// ChangeLabels applies set/remove to each named node, bumps the generation of those that
	// changed and returns them with their new state. A change that would leave a node with more
	// than labels.MaxLabels labels fails whole with ErrConflict.
	ChangeLabels(ctx context.Context, names []string, set map[string]string, remove []string, now time.Time) ([]api.Node, []api.Event, error)
	SetFacts(ctx context.Context, name string, f api.Facts) error
	// TouchNodes records last-seen times in one batch.
	TouchNodes(ctx context.Context, seen map[string]time.Time) error

	// TrustKey records a release-signing key; trusting a revoked key again is refused.
	TrustKey(ctx context.Context, k api.SigningKey) (api.Event, error)
	Keys(ctx context.Context) ([]api.SigningKey, error)
	// RevokeKey marks a key revoked: signatures by it no longer verify. The record stays.
	RevokeKey(ctx context.Context, id string, now time.Time) (api.Event, error)

	// PutRelease records a pushed release in the first channel. The same APP@VERSION with the same
	// blob is a no-op (created false); with another blob it fails with ErrConflict, as does an
	// unsigned release when the first channel does not allow unsigned ones.
	PutRelease(ctx context.Context, r api.Release) (rel api.Release, ev api.Event, created bool, err error)
	Release(ctx context.Context, app, version string) (api.Release, error)
	// Releases lists releases, of one app when app is not empty.
	Releases(ctx context.Context, app string) ([]api.Release, error)
	// ReferencedBlobs returns the sha256 of every blob some release refers to.
	ReferencedBlobs(ctx context.Context) (map[string]bool, error)

	// Channels lists channels in promotion order with their releases (not candidates: choosing
	// the highest version is the caller's) and, when withHistory, their history.
	Channels(ctx context.Context, withHistory bool) ([]api.Channel, error)
	CreateChannel(ctx context.Context, c api.ChannelCreate, now time.Time) (api.Event, error)
	// SetAllowUnsigned changes whether a channel accepts unsigned releases (no event when
	// unchanged). Forbidding them while the channel holds one is ErrConflict.
	SetAllowUnsigned(ctx context.Context, name string, allow bool, now time.Time) (api.Event, error)
	// Promote adds a release to channel to; an unsigned release only to a channel that allows
	// it. Unless force, it must be in the channel just before.
	Promote(ctx context.Context, app, version, to string, force bool, now time.Time) (api.Event, error)
	// Withdraw marks a release withdrawn and removes it from every channel, in one transaction.
	// Nodes assigned the release get a new generation (their desired state marks it withdrawn);
	// their names are returned.
	Withdraw(ctx context.Context, app, version, reason string, now time.Time) (api.Event, []string, error)
	// Republish records newVersion with the content of an existing release, in the first channel.
	Republish(ctx context.Context, app, oldVersion, newVersion string, now time.Time) (api.Release, api.Event, error)

	// Assign makes app@version the desired release of each named node that is not revoked and
	// bumps the generation of those whose assignment changed, whose names it returns (with one
	// release.deployed event when any did). Unknown releases are ErrNotFound; withdrawn ones
	// ErrConflict.
	Assign(ctx context.Context, names []string, app, version string, now time.Time) ([]string, api.Event, error)
	// SetApps stores a node's report of its apps, with an event per app that got installed or
	// newly failed.
	SetApps(ctx context.Context, name string, apps []api.NodeApp, now time.Time) ([]api.Event, error)

	// AppendEvent appends e; its Actor, Role and Source are those of ctx, whatever e held.
	AppendEvent(ctx context.Context, e api.Event) (api.Event, error)

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

// NodeRecord is what enrollment stores about a new node.
type NodeRecord struct {
	Name      string
	PublicKey string
	Labels    map[string]string
	Facts     api.Facts
}
