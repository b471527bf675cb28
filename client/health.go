package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
)

// AddCheck adds an operator check; the nodes it selects run it.
func (c *Client) AddCheck(ctx context.Context, spec api.CheckSpec) (api.CheckSpec, error) {
	var out api.CheckSpec
	return out, c.do(ctx, "POST", "/v1/checks", c.token, spec, &out)
}

// Checks lists the checks, each with its latest result on each node.
func (c *Client) Checks(ctx context.Context) ([]api.CheckListing, error) {
	var out []api.CheckListing
	return out, c.do(ctx, "GET", "/v1/checks", c.token, nil, &out)
}

// RemoveCheck removes an operator check.
func (c *Client) RemoveCheck(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/checks/"+url.PathEscape(name), c.token, nil, nil)
}

// CheckHistory returns the history of a check on a node over the last since.
func (c *Client) CheckHistory(ctx context.Context, check, node string, since time.Duration) ([]api.CheckBucket, error) {
	var out []api.CheckBucket
	q := url.Values{"node": {node}, "since": {since.String()}}
	return out, c.do(ctx, "GET", "/v1/checks/"+url.PathEscape(check)+"/history?"+q.Encode(), c.token, nil, &out)
}

// Alerts lists the open alerts, or every alert when all.
func (c *Client) Alerts(ctx context.Context, all bool) ([]api.Alert, error) {
	var out []api.Alert
	return out, c.do(ctx, "GET", "/v1/alerts?all="+strconv.FormatBool(all), c.token, nil, &out)
}

// AckAlert acknowledges an open alert: it raises nothing more until it clears.
func (c *Client) AckAlert(ctx context.Context, id int64, comment string) (api.Alert, error) {
	var out api.Alert
	return out, c.do(ctx, "POST", "/v1/alerts/"+strconv.FormatInt(id, 10)+"/ack", c.token, api.AlertAck{Comment: comment}, &out)
}
