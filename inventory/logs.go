package inventory

import (
	"context"
	"sort"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
)

// RequestLogs records an operator's request to read an app's logs on a node, for the replica
// that holds the node's stream to pass on (see api.LogsRequest), after checking that the node
// can answer: it exists, is not revoked, is up, and reports the app.
func (s *Service) RequestLogs(ctx context.Context, node string, req api.NodeLogsRequested) (api.Event, error) {
	if err := req.Validate(); err != nil {
		return api.Event{}, fault.Invalid("%v", err)
	}
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		nodes, err := tx.Nodes([]string{node})
		if err != nil {
			return err
		}
		n, ok := nodes[node]
		switch {
		case !ok || n.Status == api.StatusRevoked:
			return fault.NotFound("node %q not found", node)
		case n.Status == api.StatusDown:
			return fault.Conflict("node %s is down: its agent cannot send its logs; try again once it is up (ferry node show %s)", node, node)
		}
		apps, err := tx.NodeApps(node)
		if err != nil {
			return err
		}
		var names []string
		for _, a := range apps {
			if a.App == req.App {
				ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventNodeLogsRequested, node, req))
				return err
			}
			names = append(names, a.App)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return fault.NotFound("node %s reports no app; %s is not installed there", node, req.App)
		}
		return fault.NotFound("node %s reports no app %s (it has: %s)", node, req.App, strings.Join(names, ", "))
	})
	return ev, err
}
