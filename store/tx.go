package store

import (
	"context"
	"time"

	"github.com/ferryhq/ferry/api"
)

// Tx is one transaction of Update: the primitives the services build their rules from. A
// method reads or writes exactly what it says and decides nothing: which release may enter which
// channel, what counts as installed, which event a change records, are the services'. Every
// method runs in the context Update was given.
//
// Transactions of Update run one at a time (on PostgreSQL, across all replicas), so what a
// method reads stays true until the transaction ends. A method that refuses (ErrNotFound for
// what it names that does not exist, ErrExists for an insert of what does) changes nothing and
// leaves the transaction usable. A Tx is used by one goroutine, within the function it is given
// to. Channels are listed without their releases, candidates or history.
type Tx interface {
	// Site returns a site, without its node counts; ErrNotFound when none.
	Site(name string) (api.Site, error)
	InsertSite(s api.Site) error
	// SetSiteLabels replaces a site's labels; ErrNotFound when there is no such site. Its nodes
	// keep their generation: a site's labels change what selectors match, not what nodes run.
	SetSiteLabels(name string, labels map[string]string) error
	// DeleteSite removes a site with every node record in it, revoked ones included.
	DeleteSite(name string) error
	// SiteNodes lists, sorted, the nodes of a site that are not revoked.
	SiteNodes(site string) ([]string, error)

	// Token returns a token; ErrNotFound when none.
	Token(id string) (TokenRecord, error)
	// Tokens lists every token, oldest first.
	Tokens() ([]TokenRecord, error)
	// InsertToken stores a token; ErrNotFound when its site is unknown.
	InsertToken(t TokenRecord) error
	DeleteToken(id string) error
	// SpendToken takes one use of a token whose uses are counted.
	SpendToken(id string) error

	// Nodes returns those of the named nodes that exist, or every node when names is nil,
	// revoked ones included, without their assignments.
	Nodes(names []string) (map[string]api.Node, error)
	// NodeWithKey returns the name of the node, revoked or not, enrolled with a public key;
	// ErrNotFound when none is.
	NodeWithKey(publicKey string) (string, error)
	// InsertNode records a node of a site, up, at generation 1, enrolled and last seen at at. A
	// revoked node of the same name is replaced; a live one is ErrExists.
	InsertNode(site string, n NodeRecord, at time.Time) error
	// SetNodeStatus sets a node's status (up, down or revoked).
	SetNodeStatus(name, status string) error
	// SetLabels gives each named node its new labels and the next generation.
	SetLabels(labels map[string]map[string]string) error

	// Key returns the signing key whose id or public key is the one given; ErrNotFound when none.
	Key(id, publicKey string) (api.SigningKey, error)
	InsertKey(k api.SigningKey) error
	// RevokeKey marks a key revoked at at; false when there is no such key that is not revoked.
	RevokeKey(id string, at time.Time) (bool, error)

	// Release returns a release with its channels in promotion order; ErrNotFound when none.
	Release(app, version string) (api.Release, error)
	// InsertRelease records a release (r.Withdrawn and r.Channels are not read).
	InsertRelease(r api.Release) error
	// WithdrawRelease records a release withdrawn for reason: it leaves every channel it is in
	// (each with a "withdrawn" history entry) and each node assigned it that is not revoked gets a
	// new generation. It returns those channels, sorted by name, and those nodes.
	WithdrawRelease(app, version, reason string, at time.Time) (channels, nodes []string, err error)

	// Channels lists the channels in promotion order, without their releases.
	Channels() ([]api.Channel, error)
	// InsertChannel puts a new channel right after the channel named after.
	InsertChannel(name, after string, allowUnsigned bool, at time.Time) error
	SetAllowUnsigned(channel string, allow bool) error
	// Unsigned lists, as APP@VERSION and sorted, the unsigned releases in a channel.
	Unsigned(channel string) ([]string, error)
	// AddToChannel puts a release in a channel with a history entry of action and reason.
	AddToChannel(channel, app, version, action, reason string, at time.Time) error

	// AssignNodes makes app@version the desired release of each named node that is not revoked,
	// following channel (empty: a pin of the version), and gives each node whose assignment
	// changed a new generation. It returns the nodes it changed, in no particular order; unknown
	// names are skipped.
	AssignNodes(names []string, app, version, channel string, at time.Time) ([]string, error)
	// UnassignNodes drops the named nodes' assignment of app, giving each node it changed a new
	// generation, and returns those nodes.
	UnassignNodes(names []string, app string) ([]string, error)
	// ChannelVersions lists the versions of app in channel, in no particular order.
	ChannelVersions(channel, app string) ([]string, error)
	// ControlApp records an operator's action on the named nodes' app: stop (stopped until
	// started), start, or restart (the restart count grows by one). It gives each node whose
	// assignment changed a new generation and returns those nodes; nodes without the app
	// assigned are skipped.
	ControlApp(names []string, app, action string) ([]string, error)
	// MoveFollowers makes version the desired release of every node that follows channel for
	// app and is assigned another, giving each a new generation, and returns those nodes.
	MoveFollowers(app, channel, version string, at time.Time) ([]string, error)
	// NodeApps returns the apps a node last reported; ErrNotFound when the node is unknown or
	// revoked.
	NodeApps(node string) ([]api.NodeApp, error)
	SetNodeApps(node string, apps []api.NodeApp) error

	// AppendEvents appends events to the log, in order, each with the actor of Update's context
	// (whatever it held), and returns them with their ids.
	AppendEvents(evs ...api.Event) ([]api.Event, error)
	// AppendEventsAs is AppendEvents with the events caused by a, for a transaction that writes
	// for several callers (a batch of nodes' reports).
	AppendEventsAs(a Actor, evs ...api.Event) ([]api.Event, error)

	// InsertRollout stores a new rollout, its nodes' progress with it, at revision 1, and
	// returns its id.
	InsertRollout(r RolloutRecord) (int64, error)
	// Rollout returns one rollout, held for the rest of the transaction where the backend can
	// (PostgreSQL locks its row), so two replicas never step it at once.
	Rollout(id int64) (RolloutRecord, error)
	// RolloutRev returns a rollout's revision and whether it is open, held as Rollout holds
	// it, without reading its documents.
	RolloutRev(id int64) (rev int64, open bool, err error)
	// OpenRollouts returns the rollouts the engine still steps, of app ("" for all), by id.
	OpenRollouts(app string) ([]RolloutRecord, error)
	// UpdateRollout writes a rollout's progress, state, open and wake, and the progress of the
	// nodes in r.Nodes (the others keep theirs); it returns the rollout's new revision, and
	// ErrNotFound when the rollout is not there.
	UpdateRollout(r RolloutRecord) (int64, error)
	// AssignRollout makes app@version the desired release of the named nodes that are not
	// revoked on behalf of a rollout, on its terms, pinned (no channel); it returns the nodes
	// whose assignment changed (another version, attempt or terms) and bumps their generations.
	AssignRollout(names []string, app, version string, terms RolloutTerms, at time.Time) ([]string, error)

	// Checks lists the operator checks by name.
	Checks() ([]api.CheckSpec, error)
	// InsertCheck stores an operator check; ErrExists when its name is taken.
	InsertCheck(c api.CheckSpec) error
	// DeleteCheck removes an operator check with its nodes' latest results; ErrNotFound when
	// there is none.
	DeleteCheck(name string) error
	// BumpGenerations gives each named node that is not revoked the next generation: its
	// desired state changed in a way its record does not hold (the checks it is given).
	BumpGenerations(names []string) error
	// DeleteNodeResults forgets the latest results of the named nodes.
	DeleteNodeResults(nodes []string) error
	// PutCheckResult writes a node's latest result of a check at once.
	PutCheckResult(r api.NodeCheck) error
	// Alert returns an alert; OpenAlert the open alert of a node's check; ErrNotFound when
	// there is none.
	Alert(id int64) (api.Alert, error)
	OpenAlert(node, check string) (api.Alert, error)
	// ClearAlerts clears, at at, the open alerts of the named nodes (nil: of every node) of check
	// ("": of every check), and returns them as they were, by id.
	ClearAlerts(nodes []string, check string, at time.Time) ([]api.Alert, error)
	// InsertAlert stores a new alert and returns its id.
	InsertAlert(a api.Alert) (int64, error)
	// UpdateAlert writes an alert's state, output, acknowledgement and end; ErrNotFound when
	// there is no such alert.
	UpdateAlert(a api.Alert) error

	// InsertProbe stores a new mesh probe and returns its id.
	InsertProbe(p ProbeRecord) (int64, error)
	// Probe returns one probe, held for the rest of the transaction where the backend can
	// (PostgreSQL locks its row); ErrNotFound when none.
	Probe(id int64) (ProbeRecord, error)
	// OpenProbes returns the probes the engine still works through, by id.
	OpenProbes() ([]ProbeRecord, error)
	// UpdateProbe writes a probe's document, state, open and updated time; ErrNotFound when
	// the probe is not there.
	UpdateProbe(p ProbeRecord) error

	// InsertWebhook stores a webhook and starts the cursor of its target at w.Cursor; ErrExists
	// when its id is taken.
	InsertWebhook(w WebhookRecord) error
	// DeleteWebhook removes a webhook with its cursor and dead letters and returns it;
	// ErrNotFound when there is none.
	DeleteWebhook(id string) (WebhookRecord, error)
	// StartCursor starts a delivery target's cursor at eventID unless it has one, and returns
	// the cursor as stored.
	StartCursor(target string, eventID int64) (int64, error)
	// AdvanceCursor moves a target's cursor forward to eventID (never back); ErrNotFound when
	// the target has no cursor (its webhook was removed).
	AdvanceCursor(target string, eventID int64) error
	// InsertFailure records a dead letter, keeping the newest MaxFailures of its target.
	InsertFailure(f api.DeliveryFailure) error
	// TakeFailures removes a target's dead letters of one event, or all of them when eventID
	// is 0, and returns their events' ids, ascending, each once; ErrNotFound when the target
	// has no cursor (its webhook was removed).
	TakeFailures(target string, eventID int64) ([]int64, error)
}

// Updater runs a function in one transaction: it commits when fn returns nil and rolls back
// otherwise, returning fn's error as it is.
type Updater interface {
	Update(ctx context.Context, fn func(Tx) error) error
}

// AppendEvent appends one event in a transaction of its own, with the actor of ctx.
func AppendEvent(ctx context.Context, u Updater, e api.Event) (api.Event, error) {
	err := u.Update(ctx, func(tx Tx) (err error) {
		e, err = AppendOne(tx, e)
		return err
	})
	return e, err
}

// AppendOne appends one event in tx and returns it as stored.
func AppendOne(tx Tx, e api.Event) (api.Event, error) {
	evs, err := tx.AppendEvents(e)
	if err != nil {
		return e, err
	}
	return evs[0], nil
}
