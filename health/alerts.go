package health

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
)

// Alerts: a check whose hard state turns non-OK (and that is not flapping) raises one, with an
// alert.raised event; its state changing while it is open updates it and, unless an operator
// acknowledged it, raises it again (a further notification); its return to OK clears it. Webhooks
// deliver these events by glob like any others, so an acknowledged alert sends nothing more
// until it clears.

// MaxAckComment bounds an acknowledgement's comment.
const MaxAckComment = 512

// alert brings the open alert of a node's check in line with its hard state, and returns the
// events it appended.
func (s *Service) alert(tx store.Tx, node, check, state, output string, since, now time.Time) ([]api.Event, error) {
	open, err := tx.OpenAlert(node, check)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var ev api.Event
	switch {
	case state == api.CheckOK:
		if !exists {
			return nil, nil
		}
		return clearOpen(tx, open, "ok", now)
	case !exists:
		a := api.Alert{Node: node, Check: check, State: state, Since: since.UTC(), Output: output}
		if a.ID, err = tx.InsertAlert(a); err != nil {
			return nil, err
		}
		ev = api.NewEvent(now, api.EventAlertRaised, node, api.AlertRaised{ID: a.ID, Node: node, Check: check, State: state, Output: output})
	case open.State != state:
		open.State, open.Output = state, output
		if err := tx.UpdateAlert(open); err != nil {
			return nil, err
		}
		if open.AckedBy != "" {
			return nil, nil // acknowledged: silent until it clears
		}
		ev = api.NewEvent(now, api.EventAlertRaised, node, api.AlertRaised{ID: open.ID, Node: node, Check: check, State: state, Output: output})
	default:
		return nil, nil
	}
	return tx.AppendEvents(ev)
}

// NodesRemoved ends, in tx, what health keeps of nodes that were removed: their latest results
// and their open alerts (see ClearAlerts), and returns the events it appended.
func NodesRemoved(tx store.Tx, nodes []string, now time.Time) ([]api.Event, error) {
	if err := tx.DeleteNodeResults(nodes); err != nil {
		return nil, err
	}
	return ClearAlerts(tx, nodes, "", now)
}

// ClearAlerts clears the open alerts of the named nodes (nil: of every node) of check ("": of
// every check), which have gone away, in tx: each gets an alert.cleared event, reason
// "removed", which it returns.
func ClearAlerts(tx store.Tx, nodes []string, check string, now time.Time) ([]api.Event, error) {
	cleared, err := tx.ClearAlerts(nodes, check, now)
	if err != nil || len(cleared) == 0 {
		return nil, err
	}
	evs := make([]api.Event, 0, len(cleared))
	for _, a := range cleared {
		evs = append(evs, api.NewEvent(now, api.EventAlertCleared, a.Node, api.AlertCleared{ID: a.ID, Node: a.Node, Check: a.Check, Reason: "removed"}))
	}
	return tx.AppendEvents(evs...)
}

func clearOpen(tx store.Tx, a api.Alert, reason string, now time.Time) ([]api.Event, error) {
	a.ClearedAt = &now
	if err := tx.UpdateAlert(a); err != nil {
		return nil, err
	}
	return tx.AppendEvents(api.NewEvent(now, api.EventAlertCleared, a.Node, api.AlertCleared{ID: a.ID, Node: a.Node, Check: a.Check, Reason: reason}))
}

// Alerts lists the open alerts, or every alert when all (open ones first, then newest first),
// at most store.MaxAlertList.
func (s *Service) Alerts(ctx context.Context, all bool) ([]api.Alert, error) {
	return s.store.Alerts(ctx, all)
}

// Ack acknowledges an open alert for the actor of ctx: it stays open, and raises no further
// notification, until it clears.
func (s *Service) Ack(ctx context.Context, id int64, comment string) (api.Alert, api.Event, error) {
	if len(comment) > MaxAckComment || !api.Printable(comment) {
		return api.Alert{}, api.Event{}, fault.Invalid("a comment of at most %d bytes, on one line, please", MaxAckComment)
	}
	now := s.clk.Now().UTC()
	var a api.Alert
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) (err error) {
		a, err = tx.Alert(id)
		if errors.Is(err, store.ErrNotFound) {
			return fault.NotFound("no alert %d; see ferry alert list", id)
		}
		if err != nil {
			return err
		}
		if a.ClearedAt != nil {
			return fault.Conflict("alert %d cleared at %s; nothing to acknowledge", id, a.ClearedAt.Format(time.RFC3339))
		}
		if a.AckedBy != "" {
			return fault.Conflict("alert %d was acknowledged by %s already", id, a.AckedBy)
		}
		a.AckedBy, a.AckedAt, a.Comment = store.ActorFrom(ctx).ID, &now, comment
		if err := tx.UpdateAlert(a); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventAlertAcked, a.Node, api.AlertAcked{ID: id, Node: a.Node, Check: a.Check, Comment: comment}))
		return err
	})
	return a, ev, err
}
