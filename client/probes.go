package client

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ferryhq/ferry/api"
)

// StartProbe starts a mesh probe between the nodes a selector selects.
func (c *Client) StartProbe(ctx context.Context, req api.ProbeStart) (api.Probe, error) {
	var out api.Probe
	return out, c.do(ctx, "POST", "/v1/probes", c.token, req, &out)
}

// Probes lists the latest mesh probes, newest first, without their pairs.
func (c *Client) Probes(ctx context.Context) ([]api.Probe, error) {
	var out []api.Probe
	return out, c.do(ctx, "GET", "/v1/probes", c.token, nil, &out)
}

// Probe shows one mesh probe with its pairs.
func (c *Client) Probe(ctx context.Context, id int64) (api.Probe, error) {
	var out api.Probe
	return out, c.do(ctx, "GET", "/v1/probes/"+strconv.FormatInt(id, 10), c.token, nil, &out)
}

func probeLinkPath(ref api.ProbeLinkRef, what string) string {
	return fmt.Sprintf("/v1/agent/probes/%d/links/%d/%s", ref.Probe, ref.Link, what)
}

// ProbeListening reports, as a node, the port it listens on for a probe's link, or why not.
func (c *Client) ProbeListening(ctx context.Context, session string, ref api.ProbeLinkRef, l api.ProbeListening) error {
	return c.do(ctx, "POST", probeLinkPath(ref, "listening"), session, l, nil)
}

// ProbeResult reports, as a node, what it measured over a probe's link, or why it could not.
func (c *Client) ProbeResult(ctx context.Context, session string, ref api.ProbeLinkRef, r api.ProbeResult) error {
	return c.do(ctx, "POST", probeLinkPath(ref, "result"), session, r, nil)
}
