package client

import (
	"context"
	"net/url"

	"github.com/ferryhq/ferry/api"
)

// AddWebhook adds a webhook; the answer holds its secret, which is never shown again.
func (c *Client) AddWebhook(ctx context.Context, req api.WebhookAdd) (api.Webhook, error) {
	var out api.Webhook
	return out, c.do(ctx, "POST", "/v1/webhooks", c.token, req, &out)
}

// Webhooks lists the webhooks (never their secrets).
func (c *Client) Webhooks(ctx context.Context) ([]api.Webhook, error) {
	var out []api.Webhook
	return out, c.do(ctx, "GET", "/v1/webhooks", c.token, nil, &out)
}

// RemoveWebhook removes a webhook; deliveries to it stop.
func (c *Client) RemoveWebhook(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/v1/webhooks/"+url.PathEscape(id), c.token, nil, nil)
}

// WebhookFailures lists a webhook's dead letters, newest first.
func (c *Client) WebhookFailures(ctx context.Context, id string) ([]api.DeliveryFailure, error) {
	var out []api.DeliveryFailure
	return out, c.do(ctx, "GET", "/v1/webhooks/"+url.PathEscape(id)+"/failures", c.token, nil, &out)
}

// RetryWebhook queues a webhook's dead letters (of one event, or all) for delivery again.
func (c *Client) RetryWebhook(ctx context.Context, id string, req api.WebhookRetry) (api.WebhookRetried, error) {
	var out api.WebhookRetried
	return out, c.do(ctx, "POST", "/v1/webhooks/"+url.PathEscape(id)+"/retry", c.token, req, &out)
}
