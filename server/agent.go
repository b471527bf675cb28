package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/store"
)

// Agent authentication: an agent enrolls once with a one-off token, proving it holds the
// ed25519 key it registers. After that it opens sessions by signing a single-use challenge;
// the session token it gets back authenticates its syncs for an hour. The private key never
// leaves the node.

func (s *Server) agentEnroll(w http.ResponseWriter, r *http.Request) error {
	var req api.Enroll
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := labels.CheckName("node name", req.Name); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := labels.Set(req.Labels).Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if err := validFacts(req.Facts); err != nil {
		return err
	}
	// The token's CA pin, if the agent sent it along, is for the agent; the credential is the rest.
	cred, _, err := api.SplitEnrollToken(req.Token)
	if err != nil {
		return errorf(http.StatusUnauthorized, "%v", err)
	}
	id, _ := splitToken(cred, prefixEnroll)
	if err := verifyKeySig(req.PublicKey, api.EnrollMessage(req.Token, req.Name, req.PublicKey), req.Signature); err != nil {
		return err
	}
	req.Facts.Protocol = protocolOf(r)
	ctx := store.WithActor(r.Context(), store.Actor{ID: "node:" + req.Name, Source: sourceAddr(r)})
	n, ev, err := s.inventory.Enroll(ctx, id, hashToken(cred), store.NodeRecord{
		Name: req.Name, PublicKey: req.PublicKey, Labels: req.Labels, Facts: req.Facts,
	})
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, api.Enrolled{Node: n.Name, Site: n.Site})
	return nil
}

func protocolOf(r *http.Request) int {
	var p int
	for _, c := range r.Header.Get(api.ProtocolHeader) {
		p = p*10 + int(c-'0')
	}
	return p
}

func (s *Server) agentChallenge(w http.ResponseWriter, r *http.Request) error {
	var req api.ChallengeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := labels.CheckName("node name", req.Node); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	// A challenge grants nothing by itself; it is issued for any well-formed name so that the
	// answer does not reveal which nodes exist.
	writeJSON(w, http.StatusOK, s.issueChallenge(req.Node))
	return nil
}

func (s *Server) agentSession(w http.ResponseWriter, r *http.Request) error {
	var req api.SessionRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.spendChallenge(r.Context(), req.Node, req.Nonce); err != nil {
		return err
	}
	n, err := s.store.Node(r.Context(), req.Node)
	if err != nil || n.Status == api.StatusRevoked {
		return errorf(http.StatusForbidden, "node %s was removed from this server, or never enrolled here; to enroll it again, move its node.key and identity.json away and start the agent with a new token", req.Node)
	}
	if err := verifyKeySig(n.PublicKey, api.SessionMessage(req.Node, req.Nonce), req.Signature); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.issueSession(req.Node, n.PublicKey))
	return nil
}

// heartbeat records what one Sync frame says: the node is alive, and its facts and app report
// when it sent them. A malformed report is refused
// before anything is recorded.
func (s *Server) heartbeat(ctx context.Context, node string, req api.Sync, protocol int) error {
	if req.Apps != nil {
		if err := validApps(*req.Apps); err != nil {
			return err
		}
		// Reports write events: one node may not flood the log. An agent reports when its
		// apps change, far below this.
		if ok, wait := s.reports.allow(node, s.clk.Now()); !ok {
			secs := max(int(wait/time.Second)+1, 1)
			return &httpError{code: http.StatusTooManyRequests, retryAfter: strconv.Itoa(secs),
				msg: fmt.Sprintf("app reports from %s come too fast; retry in %ds", node, secs)}
		}
	}
	if req.Facts != nil {
		if err := validFacts(*req.Facts); err != nil {
			return err
		}
	}
	s.metrics.heartbeats.Inc()
	if back, _ := s.det.Heartbeat(node, s.clk.Now()); back {
		s.nodeBack(ctx, node)
	}
	if req.Facts != nil {
		req.Facts.Protocol = protocol
		if err := s.store.SetFacts(ctx, node, *req.Facts); err != nil {
			return err
		}
	}
	if req.Apps != nil {
		if _, err := s.assign.Report(ctx, node, *req.Apps); err != nil {
			return err
		}
	}
	if err := s.health.Ingest(ctx, node, req.Checks); err != nil {
		if errors.Is(err, fault.ErrInvalid) {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		return err
	}
	return nil
}

// validApps bounds an agent's app report: it is stored and shown to operators as given.
func validApps(apps []api.NodeApp) error {
	if len(apps) > maxReportedApps {
		return errorf(http.StatusBadRequest, "app report lists %d apps; at most %d", len(apps), maxReportedApps)
	}
	seen := map[string]bool{}
	for _, a := range apps {
		if err := labels.CheckName("app name", a.App); err != nil {
			return errorf(http.StatusBadRequest, "app report: %v", err)
		}
		if seen[a.App] {
			return errorf(http.StatusBadRequest, "app report lists %s twice", a.App)
		}
		seen[a.App] = true
		if len(a.Version) > 128 || len(a.Pending) > 128 || len(a.SHA256) > 64 || len(a.Error) > 1000 {
			return errorf(http.StatusBadRequest, "app report for %s has an over-long field", a.App)
		}
		// Shown to operators and stored in events as given: no control or bidi characters.
		if !allBytes(a.Version, versionByte) || !allBytes(a.Pending, versionByte) || !allBytes(a.SHA256, versionByte) || !api.Printable(a.Error) {
			return errorf(http.StatusBadRequest, "app report for %s has control characters in a field", a.App)
		}
		if err := validRunning(a); err != nil {
			return errorf(http.StatusBadRequest, "app report for %s: %v", a.App, err)
		}
	}
	return nil
}

// Bounds of what an agent reports about an app's processes and ports: a manifest holds no
// more than these.
const (
	maxReportedProcesses = 64
	maxReportedPorts     = 32
)

// processStates are the states a supervised process is reported in.
var processStates = map[string]bool{"starting": true, "running": true, "backoff": true, "crashloop": true, "stopping": true, "stopped": true}

// validRunning checks the part of an app report about what runs: the app's state, its
// processes, its ports and the log tail, which operators read as given.
func validRunning(a api.NodeApp) error {
	if a.State != "" && !slices.Contains(api.AppStates, a.State) {
		return fmt.Errorf("unknown state %q", a.State)
	}
	if a.Restarted < 0 {
		return errors.New("negative restart count")
	}
	if len(a.LogTail) > api.MaxLogTail {
		return fmt.Errorf("log tail of %d bytes; at most %d", len(a.LogTail), api.MaxLogTail)
	}
	// A log tail keeps its lines and tabs; nothing else that steers a terminal.
	if !api.Printable(strings.NewReplacer("\n", " ", "\t", " ").Replace(a.LogTail)) {
		return errors.New("control characters in the log tail")
	}
	if len(a.Processes) > maxReportedProcesses {
		return fmt.Errorf("%d processes; at most %d", len(a.Processes), maxReportedProcesses)
	}
	names := map[string]bool{}
	for _, p := range a.Processes {
		if err := labels.CheckName("process name", p.Name); err != nil {
			return err
		}
		if names[p.Name] {
			return fmt.Errorf("process %s listed twice", p.Name)
		}
		names[p.Name] = true
		if !processStates[p.State] {
			return fmt.Errorf("process %s: unknown state %q", p.Name, p.State)
		}
		if p.PID < 0 || p.Restarts < 0 {
			return fmt.Errorf("process %s: negative pid or restarts", p.Name)
		}
		if p.LastExit != nil && (len(p.LastExit.Signal) > 16 || !allBytes(p.LastExit.Signal, versionByte)) {
			return fmt.Errorf("process %s: bad signal name", p.Name)
		}
	}
	if len(a.Ports) > maxReportedPorts {
		return fmt.Errorf("%d ports; at most %d", len(a.Ports), maxReportedPorts)
	}
	for name, port := range a.Ports {
		if err := labels.CheckName("port name", name); err != nil {
			return err
		}
		if port < 1 || port > 65535 {
			return fmt.Errorf("port %s is %d; want 1-65535", name, port)
		}
	}
	return nil
}

// agentKeys lists the release-signing keys, revoked ones included, so an agent checks a bundle
// against the keys trusted now rather than when the release was pushed.
func (s *Server) agentKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.Keys(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keys)
	return nil
}
