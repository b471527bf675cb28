package client

import (
	"context"

	"github.com/ferryhq/ferry/api"
)

// RehearseRollout says how a rollout would go on a simulated copy of today's fleet, changing
// nothing.
func (c *Client) RehearseRollout(ctx context.Context, req api.RolloutRehearse) (api.RolloutRehearsal, error) {
	var out api.RolloutRehearsal
	return out, c.do(ctx, "POST", "/v1/rollouts/rehearse", c.token, req, &out)
}
