package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/ferryhq/ferry/api"
)

// PlanRollout says what a rollout would do, changing nothing.
func (c *Client) PlanRollout(ctx context.Context, req api.RolloutStart) (api.RolloutPlan, error) {
	var out api.RolloutPlan
	return out, c.do(ctx, "POST", "/v1/rollouts/plan", c.token, req, &out)
}

// StartRollout starts a rollout.
func (c *Client) StartRollout(ctx context.Context, req api.RolloutStart) (api.Rollout, error) {
	var out api.Rollout
	return out, c.do(ctx, "POST", "/v1/rollouts", c.token, req, &out)
}

// Rollouts lists the latest rollouts of app ("" for all), newest first.
func (c *Client) Rollouts(ctx context.Context, app string) ([]api.Rollout, error) {
	var out []api.Rollout
	return out, c.do(ctx, "GET", "/v1/rollouts?app="+url.QueryEscape(app), c.token, nil, &out)
}

// Rollout shows one rollout.
func (c *Client) Rollout(ctx context.Context, id int64) (api.Rollout, error) {
	var out api.Rollout
	return out, c.do(ctx, "GET", "/v1/rollouts/"+strconv.FormatInt(id, 10), c.token, nil, &out)
}

// ActOnRollout pauses, resumes, aborts, retries, rolls back, approves, acknowledges or reports on
// a rollout.
func (c *Client) ActOnRollout(ctx context.Context, id int64, action string, req api.RolloutAction) (api.Rollout, error) {
	var out api.Rollout
	return out, c.do(ctx, "POST", "/v1/rollouts/"+strconv.FormatInt(id, 10)+"/"+url.PathEscape(action), c.token, req, &out)
}
