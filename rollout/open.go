package rollout

import (
	"context"

	"github.com/ferryhq/ferry/api"
)

// States lists every rollout state, and NodeStates every state of a node within a rollout: the
// values an overview counts by, zeros included.
var (
	States     = []string{StateRunning, StatePaused, StateHalted, StateRollingBack, StateRolledBack, StateCompleted, StateAborted}
	NodeStates = []string{NodePending, NodeMoving, NodeDone, NodeFailed, NodeUnreachable, NodeSkipped, NodeReverting, NodeReverted, NodeRevertFailed}
)

// OpenRollout is a rollout the engine still steps, as the fleet's overview shows it: its view,
// without the nodes that need a look, and how many of each wave's nodes stand in each node
// state.
type OpenRollout struct {
	api.Rollout
	// NodeStates counts each wave's nodes by state (NodePending, NodeMoving, …), wave by wave
	// as in Waves.
	NodeStates []map[string]int
}

// Open returns the rollouts the engine still steps, oldest first.
func (s *Service) Open(ctx context.Context) ([]OpenRollout, error) {
	recs, err := s.store.OpenRollouts(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]OpenRollout, 0, len(recs))
	for _, rec := range recs {
		p, pr, err := decode(rec)
		if err != nil {
			return nil, err
		}
		o := OpenRollout{Rollout: View(rec, p, pr), NodeStates: make([]map[string]int, len(p.Waves))}
		o.Nodes = nil
		for i := range o.NodeStates {
			o.NodeStates[i] = map[string]int{}
		}
		for _, np := range pr.Nodes {
			if np.Wave >= 0 && np.Wave < len(o.NodeStates) {
				o.NodeStates[np.Wave][np.State]++
			}
		}
		out = append(out, o)
	}
	return out, nil
}
