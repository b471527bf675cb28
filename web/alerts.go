package web

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
)

// Alerts is what the alerts page reads and changes: the health service's alerts. NoAlerts has
// none.
type Alerts interface {
	// Alerts lists the open alerts, or every alert when all.
	Alerts(ctx context.Context, all bool) ([]api.Alert, error)
	// Ack acknowledges an open alert for the actor of ctx, with a comment.
	Ack(ctx context.Context, id int64, comment string) error
}

// NoAlerts has no alert.
type NoAlerts struct{}

var _ Alerts = NoAlerts{}

// Alerts implements Alerts.
func (NoAlerts) Alerts(context.Context, bool) ([]api.Alert, error) { return nil, nil }

// Ack implements Alerts.
func (NoAlerts) Ack(_ context.Context, id int64, _ string) error {
	return fault.NotFound("no alert %d", id)
}

func (h *Handler) alertsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	all := r.URL.Query().Get("all") == "1"
	last, err := h.cfg.Store.LastEventID(r.Context()) // before the read: the live page follows from here
	if err != nil {
		return err
	}
	list, err := h.cfg.Alerts.Alerts(r.Context(), all)
	if err != nil {
		return err
	}
	newestFirst(list)
	h.render(w, r, http.StatusOK, "alerts", s, map[string]any{"Alerts": list, "All": all, "Since": last})
	return nil
}

// newestFirst orders alerts open ones first, each group newest first.
func newestFirst(list []api.Alert) {
	cleared := func(a api.Alert) int {
		if a.ClearedAt != nil {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(list, func(a, b api.Alert) int {
		return cmp.Or(cmp.Compare(cleared(a), cleared(b)), b.Since.Compare(a.Since))
	})
}

// ackAlert acknowledges an alert with the form's comment, then shows the alerts again.
func (h *Handler) ackAlert(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return &pageError{http.StatusNotFound, "There is no alert " + r.PathValue("id") + "."}
	}
	// The health service bounds and checks the comment; the form's size is bounded already.
	if err := h.cfg.Alerts.Ack(r.Context(), id, r.PostForm.Get("comment")); err != nil {
		return err
	}
	to := "/alerts"
	if r.PostForm.Get("all") == "1" {
		to += "?all=1"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}
