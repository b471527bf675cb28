// Package api defines the JSON documents of Ferry's HTTP API and agent protocol. The server,
// the Go client, the agent and the CLI share these types; none of them imports another's code.
package api

import (
	"encoding/json"
	"time"
)

// Agent protocol versions the server speaks. Every agent request carries its version in the
// ProtocolHeader; the server answers a version outside [MinProtocol, MaxProtocol] with 426.
const (
	ProtocolHeader = "Ferry-Protocol"
	MinProtocol    = 2
	MaxProtocol    = 2
	// Protocol is the version this build's agent speaks: 2 holds one stream per agent
	// (GET /v1/agent/stream). Version 1, a long-polled sync request, is retired.
	Protocol = 2
	// StreamUpgrade is the Upgrade token of an agent stream.
	StreamUpgrade = "ferry-stream"
)

// Node statuses.
const (
	StatusUp      = "up"
	StatusDown    = "down"
	StatusRevoked = "revoked"
)

// Roles of operator tokens.
const (
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// Error is the body of every non-2xx answer, and the last frame of a stream the server ends
// for a reason the agent should know; Code is then the HTTP status the same refusal would have.
type Error struct {
	Error string `json:"error"`
	Code  int    `json:"code,omitempty"`
	// RetryAfter is how many seconds to wait before trying again, in an error frame on an agent
	// stream (an HTTP answer says it in its Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
}

// Site is a place nodes live.
type Site struct {
	Name    string   `json:"name"`
	Tier    int      `json:"tier"`
	Lat     *float64 `json:"lat,omitempty"`
	Lon     *float64 `json:"lon,omitempty"`
	Contact string   `json:"contact,omitempty"`
	// Labels are the site's labels (ferry site label); every node of the site carries them
	// under its own (inventory.Labels).
	Labels    map[string]string `json:"labels"`
	CreatedAt time.Time         `json:"created_at"`
	// Nodes counts the site's nodes by status; filled on reads.
	Nodes map[string]int `json:"nodes,omitempty"`
	// Health summarises the site's nodes (Health*); filled on the server's reads.
	Health string `json:"health,omitempty"`
}

// SiteAdd is the request to add a site.
type SiteAdd struct {
	Name    string   `json:"name"`
	Tier    int      `json:"tier"`
	Lat     *float64 `json:"lat,omitempty"`
	Lon     *float64 `json:"lon,omitempty"`
	Contact string   `json:"contact,omitempty"`
}

// Facts are what an agent reports about its machine.
type Facts struct {
	Hostname     string `json:"hostname"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	CPUs         int    `json:"cpus"`
	MemoryBytes  uint64 `json:"memory_bytes"`
	DiskBytes    uint64 `json:"disk_bytes"`
	DiskFree     uint64 `json:"disk_free_bytes"`
	AgentVersion string `json:"agent_version"`
	Protocol     int    `json:"protocol"`
}

// Node is one machine running the agent.
type Node struct {
	Name   string            `json:"name"`
	Site   string            `json:"site"`
	Tier   int               `json:"tier"`
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
	// SiteLabels are the labels of the node's site, which a selector sees under the node's
	// own (inventory.Labels); filled on reads.
	SiteLabels map[string]string `json:"site_labels,omitempty"`
	Facts      Facts             `json:"facts"`
	Apps       []NodeApp         `json:"apps"`
	// Assigned is the node's desired releases, one per app (set by ferry deploy).
	Assigned   []Assignment `json:"assigned"`
	Generation int64        `json:"generation"`
	LastSeen   *time.Time   `json:"last_seen,omitempty"`
	EnrolledAt time.Time    `json:"enrolled_at"`
	PublicKey  string       `json:"public_key"`
	// Health is the worst hard state of the node's checks and apps (Health*); filled on the
	// server's reads.
	Health string `json:"health,omitempty"`
}

// NodeApp is what an agent reports about one app: the release installed on the node (Version,
// empty when none is yet) and, when the assigned release could not be installed, which one and why.
type NodeApp struct {
	App         string     `json:"app"`
	Version     string     `json:"version,omitempty"`
	SHA256      string     `json:"sha256,omitempty"`
	InstalledAt *time.Time `json:"installed_at,omitempty"`
	// Pending is the assigned version when it is not the installed one; Error says why not,
	// and Retry whether the agent will try again by itself (false: it has given up on it).
	Pending string `json:"pending,omitempty"`
	Error   string `json:"error,omitempty"`
	Retry   bool   `json:"retry,omitempty"`
	// State is where the app is in its life on the node (AppStateRunning, AppStateRolledBack,
	// …). When it is rolled_back or failed, Pending is the release that failed and Error the
	// failing step and why.
	State string `json:"state,omitempty"`
	// LogTail is the end of the failing process's log when the app failed or rolled back, at
	// most MaxLogTail bytes.
	LogTail   string         `json:"log_tail,omitempty"`
	Processes []ProcessState `json:"processes,omitempty"`
	// Ports are the ports the agent gave the release's named ports, by name.
	Ports map[string]int `json:"ports,omitempty"`
	// Restarted is the count of operator restarts (Assignment.Restarts) the agent has carried
	// out.
	Restarted int64 `json:"restarted,omitempty"`
	// Attempt is the rollout attempt (Assignment.Attempt) the report answers for the pending
	// release: a failure of an earlier attempt says nothing of a retry.
	Attempt int64 `json:"attempt,omitempty"`
}

// App states, in NodeApp.State. An app moves downloading → installing → starting → verifying →
// running for each new release; a release that fails after its predecessor was stopped is rolled
// back, and the app stays rolled_back, its old release running, until the desired state changes.
const (
	AppStateDownloading = "downloading"
	AppStateInstalling  = "installing"
	AppStateStarting    = "starting"
	AppStateVerifying   = "verifying"
	AppStateRunning     = "running"
	AppStateStopped     = "stopped"   // stopped by an operator, or the release has no processes
	AppStateCrashloop   = "crashloop" // a process keeps dying; the supervisor backs off
	AppStateFailed      = "failed"    // nothing runs: no earlier release to go back to, or that failed too
	AppStateRolledBack  = "rolled_back"
)

// AppStates lists every app state, in the order of an app's life.
var AppStates = []string{AppStateDownloading, AppStateInstalling, AppStateStarting, AppStateVerifying, AppStateRunning, AppStateStopped, AppStateCrashloop, AppStateFailed, AppStateRolledBack}

// MaxLogTail bounds NodeApp.LogTail.
const MaxLogTail = 4096

// ProcessState is one supervised process of an app, as its agent last saw it.
type ProcessState struct {
	Name     string     `json:"name"`
	State    string     `json:"state"` // starting, running, backoff, crashloop, stopping, stopped
	PID      int        `json:"pid,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Restarts int        `json:"restarts"`
	// LastExit is the process's last exit, when it has exited; its code and signal are
	// unknown for a process the agent adopted after a restart of its own.
	LastExit *ProcessExit `json:"last_exit,omitempty"`
}

// ProcessExit is how a process ended.
type ProcessExit struct {
	Time   time.Time `json:"time"`
	Code   *int      `json:"code,omitempty"`
	Signal string    `json:"signal,omitempty"`
}

// Assignment is one app's desired release on a node, with what the agent needs to fetch and
// verify it: the blob's digest and size and the release's minisign signature.
type Assignment struct {
	App       string `json:"app"`
	Version   string `json:"version"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Signature string `json:"signature,omitempty"`
	// Withdrawn is set once the release is withdrawn: agents that have not installed it yet
	// must not, and the reason says why.
	Withdrawn string `json:"withdrawn,omitempty"`
	// Channel is the channel the node follows for the app, whose candidate Version is; empty
	// when the version is pinned.
	Channel string `json:"channel,omitempty"`
	// Stopped says an operator stopped the app: its processes stay stopped, across restarts of
	// the agent, until it is started again.
	Stopped bool `json:"stopped,omitempty"`
	// Restarts counts the restarts an operator asked for: each time it grows the agent restarts
	// the app's processes once.
	Restarts int64 `json:"restarts,omitempty"`
	// Rollout is the rollout that set the assignment (0: an operator's deploy) and Attempt its
	// attempt: a retry raises it, and an agent that gave up on the release tries it again.
	Rollout int64 `json:"rollout,omitempty"`
	Attempt int64 `json:"attempt,omitempty"`
	// MinHealthyTime and HealthyDeadline, when set, are the rollout wave's and override the
	// manifest's update block for verifying this release.
	MinHealthyTime  time.Duration `json:"min_healthy_time,omitempty"`
	HealthyDeadline time.Duration `json:"healthy_deadline,omitempty"`
}

// App actions an operator takes on nodes (AppControl.Action).
const (
	AppStop    = "stop"
	AppStart   = "start"
	AppRestart = "restart"
)

// AppControl asks for an action on an app on the named nodes, which must have it assigned.
type AppControl struct {
	App    string   `json:"app"`
	Action string   `json:"action"` // stop, start or restart
	Nodes  []string `json:"nodes"`
}

// AppControlled answers AppControl: the nodes whose desired state changed (a start of a
// running app changes nothing), and the app.controlled event's id.
type AppControlled struct {
	Nodes   []string `json:"nodes"`
	EventID int64    `json:"event_id,omitempty"`
}

// Deploy assigns a release to every node a selector matches (direct: no waves). A dry run
// makes every check the deploy makes and answers what it would do, changing nothing.
type Deploy struct {
	Release  string `json:"release"` // APP@VERSION, or APP with Channel
	Selector string `json:"selector"`
	DryRun   bool   `json:"dry_run,omitempty"`
	// Channel makes the nodes follow the channel's candidate of the app: a promotion into the
	// channel moves them forward, a withdrawal back to the channel's new candidate.
	Channel string `json:"channel,omitempty"`
}

// Undeploy takes an app off every node a selector matches: their agents stop its processes and
// remove its releases.
type Undeploy struct {
	App      string `json:"app"`
	Selector string `json:"selector"`
	DryRun   bool   `json:"dry_run,omitempty"`
}

// Undeployed answers Undeploy: the nodes the app was taken off (on a dry run, would be), and
// how many matched.
type Undeployed struct {
	App     string   `json:"app"`
	DryRun  bool     `json:"dry_run,omitempty"`
	Nodes   []string `json:"nodes"`
	Matched int      `json:"matched"`
	EventID int64    `json:"event_id,omitempty"`
}

// Deployed answers Deploy. Nodes are the nodes the deploy assigned the release to (on a dry
// run, would assign it to); Unchanged match the selector but have it assigned already; Matched
// counts both. EventID is the release.deployed event's, after which the nodes' outcomes are
// logged (none when nothing changed, and on a dry run).
type Deployed struct {
	Release   string   `json:"release"`
	DryRun    bool     `json:"dry_run,omitempty"`
	Nodes     []string `json:"nodes"`
	Unchanged []string `json:"unchanged"`
	Matched   int      `json:"matched"`
	EventID   int64    `json:"event_id,omitempty"`
}

// LabelChange sets and removes labels on one node or on every node a selector matches.
type LabelChange struct {
	Selector string            `json:"selector,omitempty"`
	Set      map[string]string `json:"set,omitempty"`
	Remove   []string          `json:"remove,omitempty"`
}

// LabelResult says which nodes a label change touched.
type LabelResult struct {
	Nodes []string `json:"nodes"`
}

// TokenCreate asks for a token: an enrollment token (Site set) or an operator token (Role set).
type TokenCreate struct {
	Site string `json:"site,omitempty"`
	Role string `json:"role,omitempty"`
	Uses int    `json:"uses,omitempty"`
	// TTL as a Go duration string ("24h"); empty means the default for the kind.
	TTL         string `json:"ttl,omitempty"`
	Description string `json:"description,omitempty"`
}

// Token describes a token; Secret is present only in the answer that created it.
type Token struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"` // "enroll" or "operator"
	Site        string     `json:"site,omitempty"`
	Role        string     `json:"role,omitempty"`
	UsesLeft    *int       `json:"uses_left,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	Description string     `json:"description,omitempty"`
	Secret      string     `json:"token,omitempty"`
}

// SigningKey is a minisign public key the server trusts for release signatures.
type SigningKey struct {
	ID        string     `json:"id"`
	PublicKey string     `json:"public_key"`
	Comment   string     `json:"comment,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// KeyTrust asks the server to trust a public key (base64, or the text of a .pub file).
type KeyTrust struct {
	PublicKey string `json:"public_key"`
	Comment   string `json:"comment,omitempty"`
}

// Release is one pushed bundle: APP@VERSION, content-addressed by its sha256.
type Release struct {
	App      string `json:"app"`
	Version  string `json:"version"`
	Class    string `json:"class"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	SignedBy string `json:"signed_by,omitempty"`
	// Signature is the release's .minisig, kept so agents can verify the bundle again.
	Signature string         `json:"signature,omitempty"`
	Channels  []string       `json:"channels"`
	Withdrawn string         `json:"withdrawn,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	Manifest  map[string]any `json:"manifest,omitempty"`
}

// Channel is one step of the promotion path. Candidates maps each app to the highest
// (epoch, version) release in the channel that is not withdrawn: what the channel offers.
type Channel struct {
	Name          string            `json:"name"`
	Position      int               `json:"position"`
	AllowUnsigned bool              `json:"allow_unsigned"`
	Candidates    map[string]string `json:"candidates"`
	Releases      []string          `json:"releases"`
	History       []ChannelChange   `json:"history,omitempty"`
}

// ChannelChange is one entry of a channel's history.
type ChannelChange struct {
	Release string    `json:"release"`
	Action  string    `json:"action"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// ChannelCreate adds a channel after an existing one.
type ChannelCreate struct {
	Name          string `json:"name"`
	After         string `json:"after"`
	AllowUnsigned bool   `json:"allow_unsigned,omitempty"`
}

// ChannelSet changes a channel's settings; absent fields stay as they are.
type ChannelSet struct {
	AllowUnsigned *bool `json:"allow_unsigned,omitempty"`
}

// Promote moves a release into a channel.
type Promote struct {
	To    string `json:"to"`
	Force bool   `json:"force,omitempty"`
}

// Withdraw removes a release from every channel.
type Withdraw struct {
	Reason string `json:"reason"`
}

// Republish makes an old release's content a new, higher release with an epoch.
type Republish struct {
	Epoch uint32 `json:"epoch"`
}

// Bulletin documents the versions available and running: per app, each channel's candidate
// and, per site, how many nodes run which version.
type Bulletin struct {
	Apps []BulletinApp `json:"apps"`
	// Runs and RunsSites answer "which sites run APP@VER" when asked.
	Runs      string   `json:"runs,omitempty"`
	RunsSites []string `json:"runs_sites,omitempty"`
}

// BulletinApp is one app's line of the bulletin: Candidates are its channels' candidates in
// promotion order (Channels holds the same by channel name) and Sites, per site, how many nodes
// run which version.
type BulletinApp struct {
	App        string                    `json:"app"`
	Candidates []ChannelCandidate        `json:"candidates"`
	Channels   map[string]string         `json:"channels"`
	Sites      map[string]map[string]int `json:"sites"`
	// Withdrawn gives, for each version that runs somewhere but was withdrawn, why.
	Withdrawn map[string]string `json:"withdrawn,omitempty"`
}

// ChannelCandidate is the release of an app a channel offers.
type ChannelCandidate struct {
	Channel string `json:"channel"`
	Version string `json:"version"`
}

// Event is one append-only record of a state change.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Subject string    `json:"subject"`
	// Actor is who caused it: "token:<id>" (Role says the token's role), "node:<name>" or
	// "system"; Source is the address the request came from.
	Actor  string `json:"actor"`
	Role   string `json:"role,omitempty"`
	Source string `json:"source,omitempty"`
	// Data is the payload of the event's type (see events.go): decode it with Decode.
	Data json.RawMessage `json:"data,omitempty"`
}

// Enroll is an agent's first request: it trades a one-off enrollment token for an identity
// bound to the agent's ed25519 public key. Signature signs EnrollMessage with that key, proving
// the agent holds the private key.
type Enroll struct {
	Token     string            `json:"token"`
	Name      string            `json:"name"`
	PublicKey string            `json:"public_key"` // base64 (std) of the 32-byte ed25519 key
	Labels    map[string]string `json:"labels,omitempty"`
	Facts     Facts             `json:"facts"`
	Signature string            `json:"signature"` // base64 (std)
}

// EnrollMessage is the byte string an enrolling agent signs.
func EnrollMessage(token, name, publicKey string) []byte {
	return []byte("ferry-enroll-v1\n" + token + "\n" + name + "\n" + publicKey)
}

// Enrolled answers Enroll.
type Enrolled struct {
	Node string `json:"node"`
	Site string `json:"site"`
}

// ChallengeRequest asks for a nonce to sign.
type ChallengeRequest struct {
	Node string `json:"node"`
}

// Challenge is a single-use nonce, valid until ExpiresAt.
type Challenge struct {
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionRequest proves the agent holds its key: Signature signs SessionMessage.
type SessionRequest struct {
	Node      string `json:"node"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

// SessionMessage is the byte string an agent signs to open a session.
func SessionMessage(node, nonce string) []byte {
	return []byte("ferry-session-v1\n" + node + "\n" + nonce)
}

// Session is a short-lived bearer token for agent requests. ExpiresIn says how long it lasts
// from the moment it was issued, so an agent whose clock disagrees with the server's still
// knows when to renew it.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	ExpiresIn Duration  `json:"expires_in"`
}

// Sync is the agent's heartbeat and long poll in one: the server records the heartbeat, then
// holds the request until the node's desired state passes Generation or the hold time ends.
type Sync struct {
	Generation int64  `json:"generation"`
	Facts      *Facts `json:"facts,omitempty"`
	// Apps is the agent's report of its apps, sent when it changed and with every new session.
	Apps *[]NodeApp `json:"apps,omitempty"`
	// Checks are check results since the agent's last frame (at most MaxCheckResults). An agent
	// sends a result whose state, hardness or flapping changed at once, in a frame of its own;
	// the others ride on its next heartbeat.
	Checks []CheckResult `json:"checks,omitempty"`
	// Sparse says the agent needs no answer to a plain heartbeat (one that carries nothing and
	// holds the current desired state) when the server wrote to it within the last SparseQuiet
	// intervals: it is content to hear from the server every third interval, and each answer
	// saved is most of a heartbeat's cost to the server.
	Sparse bool `json:"sparse,omitempty"`
}

// SparseQuiet is how long a server may leave a sparse stream without an answer, given the
// heartbeat interval: two and a half intervals, so that a heartbeat arriving early by up to half
// an interval (the agent's and the server's timers drift apart) does not skip its turn.
func SparseQuiet(interval time.Duration) time.Duration { return interval * 5 / 2 }

// SparseSilent is how many heartbeat intervals an agent waits for an answer to a sparse stream
// before it takes the server for dead: the server answers within SparseQuiet, and the half
// interval between them is for the answer to travel.
const SparseSilent = 3

// SyncReply answers Sync. Desired is present when it is newer than the generation the agent has.
type SyncReply struct {
	Generation        int64    `json:"generation"`
	Desired           *Desired `json:"desired,omitempty"`
	HeartbeatInterval Duration `json:"heartbeat_interval"`
	// Logs, when set, asks the agent to upload an app's logs (see LogsRequest); such a reply
	// answers no frame and carries nothing else.
	Logs *LogsRequest `json:"logs,omitempty"`
	// Probe, when set, asks the agent to take part in a mesh probe's link (see ProbeOrder);
	// such a reply answers no frame and carries nothing else.
	Probe *ProbeOrder `json:"probe,omitempty"`
}

// Desired is a node's desired-state document: its labels and the release of each app it should run.
type Desired struct {
	Generation int64             `json:"generation"`
	Labels     map[string]string `json:"labels"`
	Apps       []Assignment      `json:"apps,omitempty"`
	// Checks are the operator checks whose selector matches the node (at most MaxNodeChecks).
	Checks []CheckSpec `json:"checks,omitempty"`
}

// Duration is a time.Duration that travels as a Go duration string ("10s").
type Duration time.Duration

// MarshalText renders the duration as "10s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Version is the Ferry release this build is.
const Version = "0.1.0-dev"
