package client

import (
	"context"

	"github.com/ferryhq/ferry/api"
)

// Status returns the fleet at a glance: sites with their nodes up and down and their health,
// the failing checks, the open alerts and the open rollouts.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var out api.Status
	return out, c.do(ctx, "GET", "/v1/status", c.token, nil, &out)
}
