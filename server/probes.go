package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/ferryhq/ferry/api"
)

// Mesh probes (api/probe.go tells the whole walk): operators start and read them here; agents
// report their listeners and results to the agent routes, each for a link of its own node.

func (s *Server) startProbe(w http.ResponseWriter, r *http.Request) error {
	var req api.ProbeStart
	if err := decode(w, r, &req); err != nil {
		return err
	}
	p, ev, err := s.probes.Start(r.Context(), req)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, p)
	return nil
}

func (s *Server) listProbes(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.probes.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ps)
	return nil
}

func (s *Server) showProbe(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return errorf(http.StatusBadRequest, "invalid probe id %q: want a number", r.PathValue("id"))
	}
	p, err := s.probes.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// probeLink reads the link an agent route names.
func probeLink(r *http.Request) (api.ProbeLinkRef, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	link, lerr := strconv.Atoi(r.PathValue("link"))
	if err != nil || lerr != nil || id <= 0 || link < 0 {
		return api.ProbeLinkRef{}, errorf(http.StatusBadRequest, "invalid probe link %s/%s: want two numbers", r.PathValue("id"), r.PathValue("link"))
	}
	return api.ProbeLinkRef{Probe: id, Link: link}, nil
}

// agentProbeListening serves POST /v1/agent/probes/{id}/links/{link}/listening: the port the
// session's node listens on for a link it is To of. The connecting agent dials the host the
// listener states, or else the address the report came from.
func (s *Server) agentProbeListening(w http.ResponseWriter, r *http.Request) error {
	var l api.ProbeListening
	return s.agentProbeReport(w, r, &l, func(node string, ref api.ProbeLinkRef) (api.Event, error) {
		return s.probes.Listening(r.Context(), node, ref, sourceAddr(r), l)
	})
}

// agentProbeResult serves POST /v1/agent/probes/{id}/links/{link}/result: what the session's
// node measured over a link it is From of.
func (s *Server) agentProbeResult(w http.ResponseWriter, r *http.Request) error {
	var res api.ProbeResult
	return s.agentProbeReport(w, r, &res, func(node string, ref api.ProbeLinkRef) (api.Event, error) {
		return s.probes.Report(r.Context(), node, ref, res)
	})
}

// agentProbeReport reads the link an agent route names and the report into v, and records it.
func (s *Server) agentProbeReport(w http.ResponseWriter, r *http.Request, v interface{ Validate() error }, record func(string, api.ProbeLinkRef) (api.Event, error)) error {
	ref, err := probeLink(r)
	if err != nil {
		return err
	}
	if err := decodeProbeReport(http.MaxBytesReader(w, r.Body, maxProbeReport), v); err != nil {
		return err
	}
	ev, err := record(r.Context().Value(ctxNode).(string), ref)
	if err != nil {
		return err
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// maxProbeReport bounds an agent's probe report: an error or a few numbers.
const maxProbeReport = 4 << 10

// decodeProbeReport reads and checks an agent's probe report (*api.ProbeListening or
// *api.ProbeResult).
func decodeProbeReport(body io.Reader, v interface{ Validate() error }) error {
	if err := decodeJSON(body, v); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// probeSecret is a link's secret, which both its agents get in their orders: every replica
// derives the same from the cluster's secret, so none is stored or travels in an event.
func (s *Server) probeSecret(ref api.ProbeLinkRef) string {
	m := hmac.New(sha256.New, s.secret)
	fmt.Fprintf(m, "ferry mesh probe %d link %d", ref.Probe, ref.Link)
	return hex.EncodeToString(m.Sum(nil))
}

// passProbeOrder notes a link's event (probe.Orders) and hands the order it makes due to the
// agent that must act on it, when this replica holds its stream: to listen when the link
// starts, to connect once the other listens. An agent whose stream opens later gets it then
// (sendProbeOrders), on whichever replica it opens.
func (s *Server) passProbeOrder(e api.Event) {
	node := s.probeOrders.Apply(e)
	if node == "" {
		return
	}
	if st := s.hub.stream(node); st != nil {
		s.sendProbeOrders(node, st)
	}
}

// sendProbeOrders sends node, on its stream st, the probe orders that wait for it and have
// not gone out on st, in the background.
func (s *Server) sendProbeOrders(node string, st *stream) {
	orders := s.probeOrders.Due(node, st)
	if len(orders) == 0 {
		return
	}
	go func() {
		for _, o := range orders {
			o.Secret = s.probeSecret(o.ProbeLinkRef)
			if o.Validate() != nil {
				continue
			}
			if err := st.send(api.SyncReply{Probe: &o}); err != nil {
				s.log.Debug("pass a probe order to the agent", "node", node, "err", err)
				return
			}
		}
	}()
}
