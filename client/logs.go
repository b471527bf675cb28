package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ferryhq/ferry/api"
)

// LogsQuery is what ferry logs asks for: the app's processes' last Tail lines (all of its
// processes unless Process names one), and with Follow what they write afterwards.
type LogsQuery struct {
	App     string
	Process string
	Tail    int
	Follow  bool
}

// NodeLogs asks the server for an app's logs on a node and returns them as they come, as plain
// text: the caller reads until EOF (with Follow, until it closes the body or ctx ends).
func (c *Client) NodeLogs(ctx context.Context, node string, q LogsQuery) (io.ReadCloser, error) {
	v := url.Values{"app": {q.App}, "tail": {strconv.Itoa(q.Tail)}}
	if q.Process != "" {
		v.Set("process", q.Process)
	}
	if q.Follow {
		v.Set("follow", "true")
	}
	path := "/v1/nodes/" + url.PathEscape(node) + "/logs?" + v.Encode()
	for tried := 1; ; tried++ {
		req, err := c.request(ctx, "GET", path, c.token, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			err = c.unreachable(err)
			// A GET that reached no server asked nothing of any node: another may take it.
			if tried < len(c.bases) && ctx.Err() == nil && elsewhere(http.MethodGet, err) {
				c.Failover()
				continue
			}
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return nil, readError(resp)
		}
		return resp.Body, nil
	}
}

// UploadLogs answers the logs request id for the agent with session: it sends the body open
// returns, or with refusal set the agent's one-line refusal instead. Only the replica where the
// operator asked takes the upload; the others answer 404 before reading any of it, so the client
// tries each of its addresses in turn, from the one in use, opening a fresh body for each. It
// returns when the server has ended the upload (the operator left, or the logs are all sent).
func (c *Client) UploadLogs(ctx context.Context, session, id, refusal string, open func() io.ReadCloser) error {
	path := "/v1/agent/logs/" + url.PathEscape(id)
	first := int(c.cur.Load())
	var last error
	for i := range c.bases {
		base := c.bases[(first+i)%len(c.bases)]
		var req *http.Request
		var err error
		if refusal != "" {
			req, err = c.requestAt(ctx, base, "POST", path, session, api.Error{Error: refusal})
		} else {
			req, err = c.requestAt(ctx, base, "POST", path, session, nil)
			if err == nil {
				body := open()
				req.Body, req.ContentLength = body, -1
				req.Header.Set("Content-Type", "text/plain; charset=utf-8")
			}
		}
		if err != nil {
			return err
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			last = fmt.Errorf("upload logs to %s: %w", base, unwrapURL(err))
			if ctx.Err() != nil {
				return last
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				continue // not reached: the next replica may be the one
			}
			return last
		}
		if resp.StatusCode < 300 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			return nil
		}
		last = readError(resp)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return last
		}
	}
	return last
}
