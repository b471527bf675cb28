package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Live pages follow the change feed over server-sent events: the log read after the last event
// sent, woken by the store's Changed, on whichever replica the browser reached. A browser that
// reconnects sends Last-Event-ID and misses nothing.

// liveKeepalive is how often a quiet stream says it is alive, so proxies keep it open.
const liveKeepalive = 15 * time.Second

// follow streams server-sent events to w: from the log after since, each batch of events is
// handed to send, which writes what the page needs (or nothing).
func (h *Handler) follow(w http.ResponseWriter, r *http.Request, since int64, send func(evs []api.Event) error) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return &pageError{http.StatusInternalServerError, "This server cannot stream."}
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		id, err := strconv.ParseInt(last, 10, 64)
		if err != nil || id < 0 {
			return &pageError{http.StatusBadRequest, "Bad Last-Event-ID."}
		}
		since = id
	}
	select {
	case h.live <- struct{}{}:
		defer func() { <-h.live }()
	default:
		w.Header().Set("Retry-After", "10")
		return &pageError{http.StatusServiceUnavailable, "Too many live pages are open; try again shortly."}
	}
	// The stream lasts as long as the page is open: lift the request's read deadline.
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	ctx := r.Context()
	feed := store.Watch(h.cfg.Store, since)
	for {
		evs, err := h.next(ctx, feed)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errQuiet):
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
		case err != nil:
			return nil // the headers are out; the browser reconnects from its last id
		default:
			if err := send(evs); err != nil {
				return nil
			}
			// The position, so a reconnect resumes here even when nothing was sent for it.
			if _, err := fmt.Fprintf(w, "id: %d\n\n", feed.Since()); err != nil {
				return nil
			}
		}
		fl.Flush()
	}
}

// errQuiet is next's answer when the feed brought nothing for a keepalive's time.
var errQuiet = errors.New("no event for a while")

// next waits for the feed's next events, at most liveKeepalive on the clock.
func (h *Handler) next(ctx context.Context, feed *store.Feed) ([]api.Event, error) {
	wait, cancel := context.WithCancel(ctx)
	defer cancel()
	t := h.cfg.Clock.NewTimer(liveKeepalive)
	defer t.Stop()
	quiet := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			close(quiet)
			cancel()
		case <-wait.Done():
		}
	}()
	evs, err := feed.Next(wait)
	if err != nil && ctx.Err() == nil {
		select {
		case <-quiet:
			return nil, errQuiet
		default:
		}
	}
	return evs, err
}

// writeSSE writes one server-sent event of type typ with v as JSON.
func writeSSE(w http.ResponseWriter, typ string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, b)
	return err
}

// liveEvent is an event as the events page shows it.
type liveEvent struct {
	ID      int64  `json:"id"`
	Time    string `json:"time"`
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Actor   string `json:"actor"`
	Data    string `json:"data"`
}

// sinceParam reads a live stream's ?since (the last event the page was drawn with), or starts
// from the log's end.
func (h *Handler) sinceParam(r *http.Request) (int64, error) {
	if v := r.URL.Query().Get("since"); v != "" {
		since, err := strconv.ParseInt(v, 10, 64)
		if err != nil || since < 0 {
			return 0, &pageError{http.StatusBadRequest, "Bad since: want an event id."}
		}
		return since, nil
	}
	return h.cfg.Store.LastEventID(r.Context())
}

// eventsLive streams every new event to the events page and the overview (which redraws its map
// when a node or site changes).
func (h *Handler) eventsLive(w http.ResponseWriter, r *http.Request, s *session) error {
	since, err := h.sinceParam(r)
	if err != nil {
		return err
	}
	return h.follow(w, r, since, func(evs []api.Event) error {
		for _, e := range evs {
			le := liveEvent{ID: e.ID, Time: e.Time.UTC().Format("2006-01-02 15:04:05Z"), Type: e.Type, Subject: e.Subject, Actor: e.Actor, Data: string(e.Data)}
			if err := writeSSE(w, "event", le); err != nil {
				return err
			}
		}
		return nil
	})
}

// rolloutLive streams the rollout's view each time one of its events is written.
func (h *Handler) rolloutLive(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := rolloutID(r)
	if err != nil {
		return err
	}
	since, err := h.sinceParam(r)
	if err != nil {
		return err
	}
	if _, err := h.cfg.Rollouts.Get(r.Context(), id); err != nil {
		return err
	}
	subject := api.RolloutSubject(id)
	return h.follow(w, r, since, func(evs []api.Event) error {
		for _, e := range evs {
			if e.Subject == subject {
				ro, err := h.cfg.Rollouts.Get(r.Context(), id)
				if err != nil {
					return err
				}
				return writeSSE(w, "rollout", ro)
			}
		}
		return nil
	})
}
