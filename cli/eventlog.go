package cli

import (
	"context"
	"path"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
)

// The server lists the event log forwards from an id, whole. What ferry events shows (the
// newest events, of a type, about a node or a site) is worked out here from those pages.

// eventFilter keeps the events of some types, about a node, about a site.
type eventFilter struct {
	types []string // globs
	node  string
	site  string
	// siteNodes are the nodes of site, revoked ones included; learn adds those that enroll later.
	siteNodes map[string]bool
}

// newEventFilter makes the filter of ferry events' flags. With a site, it lists the site's nodes.
func newEventFilter(ctx context.Context, c *client.Client, types []string, node, site string) (*eventFilter, error) {
	f := &eventFilter{types: types, node: node, site: site}
	if site == "" {
		return f, nil
	}
	f.siteNodes = map[string]bool{}
	for _, status := range []string{"", api.StatusRevoked} {
		nodes, err := c.Nodes(ctx, client.NodeQuery{Site: site, Status: status})
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			f.siteNodes[n.Name] = true
		}
	}
	return f, nil
}

// learn notes a node that enrolls in the filter's site; a follower sees every event through it.
func (f *eventFilter) learn(ev api.Event) {
	var p api.NodeEnrolled
	if f.site != "" && ev.Type == api.EventNodeEnrolled && ev.Decode(&p) == nil && p.Site == f.site {
		f.siteNodes[ev.Subject] = true
	}
}

func (f *eventFilter) match(ev api.Event) bool {
	if len(f.types) > 0 {
		ok := false
		for _, t := range f.types {
			if m, _ := path.Match(t, ev.Type); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if f.node != "" && !aboutNode(ev, func(n string) bool { return n == f.node }) {
		return false
	}
	if f.site != "" {
		aboutSite := strings.HasPrefix(ev.Type, "site.") && ev.Subject == f.site || ev.Fields()["site"] == f.site
		if !aboutSite && !aboutNode(ev, func(n string) bool { return f.siteNodes[n] }) {
			return false
		}
	}
	return true
}

// aboutNode reports whether an event is about a node is accepts: the subject of a node or app
// event, the node that caused it, or one of the nodes a deploy assigned.
func aboutNode(ev api.Event, is func(string) bool) bool {
	if (strings.HasPrefix(ev.Type, "node.") || strings.HasPrefix(ev.Type, "app.")) && is(ev.Subject) {
		return true
	}
	if n, ok := strings.CutPrefix(ev.Actor, "node:"); ok && is(n) {
		return true
	}
	var deployed api.ReleaseDeployed
	if ev.Type == api.EventReleaseDeployed && ev.Decode(&deployed) == nil {
		for _, n := range deployed.Nodes {
			if is(n) {
				return true
			}
		}
	}
	return false
}

// forwardEvents reads the log after since, page events a request, keeping those keep accepts,
// until it has limit of them (0: no limit) or reaches the end. It returns them and the id of the
// last event it read.
func forwardEvents(ctx context.Context, c *client.Client, since int64, limit, page int, keep func(api.Event) bool) ([]api.Event, int64, error) {
	var out []api.Event
	for {
		evs, err := c.Events(ctx, since, page)
		if err != nil {
			return nil, since, err
		}
		for _, ev := range evs {
			since = ev.ID
			if keep(ev) {
				out = append(out, ev)
				if len(out) == limit {
					return out, since, nil
				}
			}
		}
		if len(evs) < page {
			return out, since, nil
		}
	}
}

// newestEvents returns the newest limit events keep accepts (all with 0), oldest first, and the
// id of the newest event in the log (0 when it is empty). A log of less than a page is read in
// one request; a longer one is not read from the start: its end is found by probing, and it is
// read backwards from there in windows of ids until limit events are found.
func newestEvents(ctx context.Context, c *client.Client, limit, page int, keep func(api.Event) bool) ([]api.Event, int64, error) {
	if limit == 0 {
		return forwardEvents(ctx, c, 0, 0, page, keep)
	}
	first, err := c.Events(ctx, 0, page)
	if err != nil {
		return nil, 0, err
	}
	if len(first) < page {
		var out []api.Event
		var last int64
		for _, ev := range first {
			last = ev.ID
			if keep(ev) {
				out = append(out, ev)
			}
		}
		return out[max(len(out)-limit, 0):], last, nil
	}
	window := int64(min(max(limit, 100), page))
	// Every event id is at least lo; none is above hi once hi is set. advance asks for the
	// first event after p: there is one, and lo moves up to it, or there is none, and hi moves
	// down to p. Doubling steps find a hi, halving ones bring it within a window of lo.
	lo, hi := first[len(first)-1].ID, int64(0)
	advance := func(p int64) error {
		evs, err := c.Events(ctx, p, 1)
		switch {
		case err != nil:
			return err
		case len(evs) > 0:
			lo = evs[0].ID
		default:
			hi = p
		}
		return nil
	}
	for step := int64(page); hi == 0; step *= 2 {
		if err := advance(lo + step); err != nil {
			return nil, 0, err
		}
	}
	for hi-lo > window {
		if err := advance(lo + (hi-lo)/2); err != nil {
			return nil, 0, err
		}
	}
	// Read windows (start, end] back from hi, newest first, until limit events are found. No
	// window spans more ids than a request may return, so one request reads each whole; each is
	// twice as wide as the one before, up to a page, as a filter may keep few events.
	var chunks [][]api.Event
	var found int
	var last int64
	for end := hi; end > 0 && found < limit; window = min(window*2, int64(page)) {
		start := max(end-window, 0)
		evs, err := c.Events(ctx, start, int(end-start))
		if err != nil {
			return nil, 0, err
		}
		var chunk []api.Event
		for _, ev := range evs {
			if ev.ID > end {
				break
			}
			last = max(last, ev.ID)
			if keep(ev) {
				chunk = append(chunk, ev)
			}
		}
		chunks = append(chunks, chunk)
		found += len(chunk)
		end = start
	}
	out := make([]api.Event, 0, found)
	for i := len(chunks) - 1; i >= 0; i-- {
		out = append(out, chunks[i]...)
	}
	return out[max(len(out)-limit, 0):], last, nil
}
