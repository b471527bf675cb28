package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// listEvents returns the log after ?since, or with ?follow=true streams it as server-sent
// events: every event carries its id, and a client that reconnects with Last-Event-ID (or
// ?since) resumes right after the last one it saw, with no gap and no duplicate.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	since, err := queryInt64(r, "since", 0)
	if err != nil {
		return err
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		if since, err = strconv.ParseInt(last, 10, 64); err != nil || since < 0 {
			return errorf(http.StatusBadRequest, "bad Last-Event-ID %q", last)
		}
	}
	limit, err := queryInt64(r, "limit", 1000)
	if err != nil {
		return err
	}
	limit = min(max(limit, 1), 10000)
	follow := r.URL.Query().Get("follow") == "true" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if !follow {
		evs, err := s.store.Events(r.Context(), since, int(limit))
		if err != nil {
			return err
		}
		if evs == nil {
			evs = []api.Event{}
		}
		writeJSON(w, http.StatusOK, evs)
		return nil
	}
	return s.streamEvents(w, r, since)
}

const keepalive = 15 * time.Second

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, since int64) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return errorf(http.StatusInternalServerError, "streaming unsupported")
	}
	// Each open stream holds a connection and buffers: bound them per token.
	who := store.ActorFrom(r.Context()).ID
	if !s.follows.take(who, s.cfg.MaxFollowers) {
		return &httpError{code: http.StatusTooManyRequests, retryAfter: "5",
			msg: fmt.Sprintf("this token already follows the event log %d times; close a follower first", s.cfg.MaxFollowers)}
	}
	defer s.follows.release(who)
	// A follower stays for as long as it likes: lift the request read deadline, or the server
	// would end the stream when it passes.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": ferry events after %d\n\n", since)
	fl.Flush()
	ctx := r.Context()
	for {
		wake := s.store.Changed() // before the read, so a write after it wakes this follower
		evs, err := s.store.Events(ctx, since, 500)
		if err != nil {
			return nil // headers are out; the client reconnects from its last id
		}
		for _, e := range evs {
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b); err != nil {
				return nil
			}
			since = e.ID
		}
		fl.Flush()
		if len(evs) == 500 {
			continue
		}
		t := s.clk.NewTimer(keepalive)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-wake:
			t.Stop()
		case <-t.C():
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}
