package api

import (
	"encoding/json"
	"time"
)

// Event types: what happened, one constant each. An event's Data is the payload struct named
// beside its type (none for the types without one).
const (
	EventSiteAdded   = "site.added"   // SiteAdded
	EventSiteRemoved = "site.removed" // SiteRemoved
	EventSiteLabeled = "site.labeled" // SiteLabeled

	EventTokenCreated = "token.created" // TokenCreated
	EventTokenRevoked = "token.revoked"

	EventNodeEnrolled = "node.enrolled" // NodeEnrolled
	EventNodeUp       = "node.up"       // NodeStatusChanged
	EventNodeDown     = "node.down"     // NodeStatusChanged
	EventNodeRevoked  = "node.revoked"  // NodeRevoked
	EventNodeLabeled  = "node.labeled"  // NodeLabeled

	EventKeyTrusted = "key.trusted" // KeyTrusted
	EventKeyRevoked = "key.revoked"

	EventChannelCreated = "channel.created" // ChannelCreated
	EventChannelChanged = "channel.changed" // ChannelChanged

	EventReleasePushed      = "release.pushed"      // ReleasePushed
	EventReleasePromoted    = "release.promoted"    // ReleasePromoted
	EventReleaseWithdrawn   = "release.withdrawn"   // ReleaseWithdrawn
	EventReleaseRepublished = "release.republished" // ReleaseRepublished
	EventReleaseDeployed    = "release.deployed"    // ReleaseDeployed

	EventAppInstalled = "app.installed"  // AppInstalled
	EventAppFailed    = "app.failed"     // AppFailed
	EventAppState     = "app.state"      // AppStateChanged
	EventAppUndeploy  = "app.undeployed" // AppUndeployed
	EventAppControl   = "app.controlled" // AppControlledEvent
	EventAppRestarted = "app.restarted"  // AppRestarted

	EventBlobCollected = "blob.collected" // BlobCollected
)

// SiteAdded is the payload of site.added.
type SiteAdded struct {
	Tier int      `json:"tier"`
	Lat  *float64 `json:"lat,omitempty"`
	Lon  *float64 `json:"lon,omitempty"`
}

// SiteRemoved is the payload of site.removed.
type SiteRemoved struct {
	NodesRevoked int `json:"nodes_revoked"`
}

// SiteLabeled is the payload of site.labeled: what the change set and removed, and the site's
// whole label set after it. It changes which nodes selectors match: which operator checks
// nodes run (Nodes), never which releases.
type SiteLabeled struct {
	Set     map[string]string `json:"set,omitempty"`
	Removed []string          `json:"removed,omitempty"`
	Labels  map[string]string `json:"labels"`
	// Nodes are the site's nodes whose operator checks the change changed; each got a new
	// generation.
	Nodes []string `json:"nodes,omitempty"`
}

// TokenCreated is the payload of token.created.
type TokenCreated struct {
	Kind string `json:"kind"`
	Site string `json:"site,omitempty"`
	Role string `json:"role,omitempty"`
}

// NodeEnrolled is the payload of node.enrolled.
type NodeEnrolled struct {
	Site  string `json:"site"`
	Token string `json:"token"`
}

// NodeStatusChanged is the payload of node.up and node.down.
type NodeStatusChanged struct {
	From string `json:"from"`
}

// NodeRevoked is the payload of node.revoked: Site and Reason are set when the node went with
// its site.
type NodeRevoked struct {
	Site   string `json:"site,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// NodeLabeled is the payload of node.labeled: the node's whole label set after the change, and
// the generation of desired state it makes.
type NodeLabeled struct {
	Labels     map[string]string `json:"labels"`
	Generation int64             `json:"generation"`
}

// KeyTrusted is the payload of key.trusted.
type KeyTrusted struct {
	Comment string `json:"comment"`
}

// ChannelCreated is the payload of channel.created.
type ChannelCreated struct {
	After         string `json:"after"`
	AllowUnsigned bool   `json:"allow_unsigned"`
}

// ChannelChanged is the payload of channel.changed.
type ChannelChanged struct {
	AllowUnsigned bool `json:"allow_unsigned"`
}

// ReleasePushed is the payload of release.pushed.
type ReleasePushed struct {
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	SignedBy string `json:"signed_by"`
	Channel  string `json:"channel"`
}

// ReleasePromoted is the payload of release.promoted: From is empty when the promotion skipped
// the order (Forced).
type ReleasePromoted struct {
	To     string `json:"to"`
	From   string `json:"from"`
	Forced bool   `json:"forced"`
}

// ReleaseWithdrawn is the payload of release.withdrawn.
type ReleaseWithdrawn struct {
	Reason        string   `json:"reason"`
	Channels      []string `json:"channels"`
	AssignedNodes int      `json:"assigned_nodes"`
}

// ReleaseRepublished is the payload of release.republished.
type ReleaseRepublished struct {
	From    string `json:"from"`
	Channel string `json:"channel"`
}

// ReleaseDeployed is the payload of release.deployed: the nodes whose desired state changed.
type ReleaseDeployed struct {
	Nodes []string `json:"nodes"`
	// Channel is set when the nodes follow a channel: deployed to follow it, or moved because
	// its candidate changed.
	Channel string `json:"channel,omitempty"`
	// Rollout is the rollout that assigned the release (moving nodes on, or putting them back).
	Rollout int64 `json:"rollout,omitempty"`
}

// AppControlledEvent is the payload of app.controlled: an operator stopped, started or restarted
// the app on these nodes.
type AppControlledEvent struct {
	Action string   `json:"action"`
	Nodes  []string `json:"nodes"`
}

// AppRestarted is the payload of app.restarted: the node's agent restarted the app's processes
// as an operator asked, Restarts times so far.
type AppRestarted struct {
	App      string `json:"app"`
	Version  string `json:"version,omitempty"`
	Restarts int64  `json:"restarts"`
}

// AppUndeployed is the payload of app.undeployed: the app was taken off these nodes.
type AppUndeployed struct {
	Nodes   []string `json:"nodes"`
	Rollout int64    `json:"rollout,omitempty"` // the rollout that took the app off, putting nodes back
}

// AppInstalled is the payload of app.installed.
type AppInstalled struct {
	App     string `json:"app"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	From    string `json:"from,omitempty"` // the version it replaced
}

// AppFailed is the payload of app.failed: Retry says the agent tries again by itself.
type AppFailed struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Error   string `json:"error"`
	Retry   bool   `json:"retry"`
}

// AppStateChanged is the payload of app.state: an app on a node moved from one state to another
// (api.AppStateRunning, api.AppStateRolledBack, …). Reason says why, for failed, rolled_back and crashloop.
type AppStateChanged struct {
	App     string `json:"app"`
	Version string `json:"version,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to"`
	Reason  string `json:"reason,omitempty"`
}

// BlobCollected is the payload of blob.collected.
type BlobCollected struct {
	Size int64 `json:"size"`
}

// NewEvent returns an event of typ about subject at t, carrying payload (a struct above, or nil).
func NewEvent(t time.Time, typ, subject string, payload any) Event {
	e := Event{Time: t, Type: typ, Subject: subject}
	if payload != nil {
		e.Data, _ = json.Marshal(payload) // payloads are plain structs: they always marshal
	}
	return e
}

// Decode reads the event's payload into v, a pointer to the struct its type names.
func (e Event) Decode(v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	return json.Unmarshal(e.Data, v)
}

// Fields returns the payload as a generic map, for display; nil when there is none.
func (e Event) Fields() map[string]any {
	var m map[string]any
	json.Unmarshal(e.Data, &m)
	return m
}
