package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) deployCmd() *cobra.Command {
	var sel, channel string
	var all, wait, dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "deploy APP@VER | APP --channel CH  --selector SEL | --all [--dry-run | --wait [--timeout D]]",
		Short: "Assign a release to nodes at once (direct: no waves), or make them follow a channel; their agents verify and install it",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var app, ver string
			var err error
			if channel == "" {
				if app, ver, err = splitRelease("deploy", a[0]); err != nil {
					return err
				}
			} else if strings.Contains(a[0], "@") {
				return Usagef("deploy: with --channel, name the app alone (%s): the nodes follow the channel's candidate", strings.SplitN(a[0], "@", 2)[0])
			} else {
				app = a[0]
			}
			switch {
			case sel != "" && all:
				return Usagef("deploy: give --selector or --all, not both")
			case all:
				sel = labels.KeySite // every node has a site
			case sel == "":
				return Usagef("deploy: give --selector SEL (e.g. site=ams) or --all")
			}
			if _, err := labels.ParseSelector(sel); err != nil {
				return UsageError{err}
			}
			if timeout <= 0 {
				return Usagef("deploy: --timeout must be positive")
			}
			if dryRun && wait {
				return Usagef("deploy: give --dry-run or --wait, not both")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.Deploy(cmd.Context(), api.Deploy{Release: a[0], Channel: channel, Selector: sel, DryRun: dryRun})
			if err != nil {
				return err
			}
			if channel != "" {
				_, ver, _ = strings.Cut(res.Release, "@") // the channel's candidate
			}
			if dryRun {
				return e.printDryRun(cmd.Context(), c, res, app, sel)
			}
			if e.json() && !wait {
				return e.printJSON(res)
			}
			switch {
			case e.json():
			case len(res.Nodes) == 0:
				e.printf("%s assigned to 0 node(s): all %d matching node(s) have it assigned already\n", res.Release, res.Matched)
			default:
				follows := ""
				if channel != "" {
					follows = ", which follow " + channel
				}
				e.printf("%s assigned to %d node(s)%s\n", res.Release, len(res.Nodes), follows)
			}
			if !wait {
				e.printf("follow with: ferry events --follow, or deploy with --wait\n")
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out, err := e.awaitInstalls(ctx, c, res, app, ver)
			if e.json() {
				if perr := e.printJSON(out); perr != nil {
					return perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "deploy to every node this selector matches")
	cmd.Flags().StringVar(&channel, "channel", "", "make the nodes follow this channel's candidate of APP: promotions move them forward, withdrawals back")
	cmd.Flags().BoolVar(&all, "all", false, "deploy to every node")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the nodes the deploy would change, and change nothing")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every assigned node has installed the release or given up on it")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, how long to wait")
	return cmd
}

func (e *env) undeployCmd() *cobra.Command {
	var sel string
	var all, dryRun bool
	cmd := &cobra.Command{
		Use:   "undeploy APP --selector SEL | --all [--dry-run]",
		Short: "Take an app off nodes: their agents stop its processes and remove its releases",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := labels.CheckName("app name", a[0]); err != nil {
				return UsageError{err}
			}
			switch {
			case sel != "" && all:
				return Usagef("undeploy: give --selector or --all, not both")
			case all:
				sel = labels.KeySite
			case sel == "":
				return Usagef("undeploy: give --selector SEL (e.g. site=ams) or --all")
			}
			if _, err := labels.ParseSelector(sel); err != nil {
				return UsageError{err}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.Undeploy(cmd.Context(), api.Undeploy{App: a[0], Selector: sel, DryRun: dryRun})
			if err != nil {
				return err
			}
			switch {
			case e.json():
				return e.printJSON(res)
			case len(res.Nodes) == 0:
				e.printf("%s is assigned to none of the %d matching node(s); nothing undeployed\n", res.App, res.Matched)
			case dryRun:
				e.printf("dry run: %s would be taken off %d node(s): %s; nothing changed\n", res.App, len(res.Nodes), strings.Join(res.Nodes, " "))
			default:
				e.printf("%s taken off %d node(s); their agents stop it and remove its releases\n", res.App, len(res.Nodes))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "undeploy from every node this selector matches")
	cmd.Flags().BoolVar(&all, "all", false, "undeploy from every node")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the nodes it would be taken off, and change nothing")
	return cmd
}

// deployPlan is what a dry run prints as JSON: the server's answer and the selector.
type deployPlan struct {
	api.Deployed
	Selector string `json:"selector"`
}

// printDryRun shows what the server said a deploy would do: the nodes it would assign the
// release to, with what they have now, and how many more match and have it assigned already.
func (e *env) printDryRun(ctx context.Context, c *client.Client, res api.Deployed, app, sel string) error {
	if e.json() {
		return e.printJSON(deployPlan{Deployed: res, Selector: sel})
	}
	also := ""
	if n := len(res.Unchanged); n > 0 {
		also = fmt.Sprintf(" (%d more match, with %s assigned already)", n, res.Release)
	}
	e.printf("dry run: %s would be assigned to %d node(s)%s; nothing changed\n", res.Release, len(res.Nodes), also)
	if len(res.Nodes) == 0 {
		return nil
	}
	nodes, err := c.Nodes(ctx, client.NodeQuery{Selector: sel})
	if err != nil {
		return err
	}
	byName := make(map[string]api.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	rows := make([][]string, len(res.Nodes))
	for i, name := range res.Nodes {
		n := byName[name]
		installed, assigned := "-", "-"
		for _, a := range n.Apps {
			if a.App == app {
				installed = dash(a.Version)
			}
		}
		for _, a := range n.Assigned {
			if a.App == app {
				assigned = a.Version
			}
		}
		rows[i] = []string{name, dash(n.Site), dash(n.Status), installed, assigned}
	}
	return e.table([]string{"NODE", "SITE", "STATUS", "INSTALLED", "ASSIGNED NOW"}, rows)
}

// deployOutcome is what --wait saw: which nodes installed the release, which gave up on it, and
// which had not answered when it stopped waiting.
type deployOutcome struct {
	Release   string   `json:"release"`
	Installed []string `json:"installed"`
	Failed    []string `json:"failed"`
	Waiting   []string `json:"waiting"`
}

// awaitInstalls follows the event log from the deploy until each assigned node runs app@ver,
// verified, or rolled it back or gave up on it, printing each step and outcome as it comes.
func (e *env) awaitInstalls(ctx context.Context, c *client.Client, res api.Deployed, app, ver string) (deployOutcome, error) {
	out := deployOutcome{Release: res.Release, Installed: []string{}, Failed: []string{}, Waiting: []string{}}
	pending := map[string]bool{}
	for _, n := range res.Nodes {
		pending[n] = true
	}
	total := len(pending)
	say := func(format string, args ...any) {
		if !e.json() {
			e.printf(format+"\n", args...)
		}
	}
	done := func(node string, ok bool, why string) {
		delete(pending, node)
		if ok {
			out.Installed = append(out.Installed, node)
			say("%s: installed %s (%d/%d)", node, res.Release, total-len(pending), total)
		} else {
			out.Failed = append(out.Failed, node)
			say("%s: gave up on %s: %s (%d/%d)", node, res.Release, why, total-len(pending), total)
		}
	}
	// A node that already had the release installed reports nothing new: look once.
	if nodes, err := c.Nodes(ctx, client.NodeQuery{}); err == nil {
		for _, n := range nodes {
			for _, a := range n.Apps {
				if pending[n.Name] && a.App == app && a.Version == ver && a.Pending == "" &&
					(a.State == "" || a.State == api.AppStateRunning || a.State == api.AppStateStopped) {
					done(n.Name, true, "")
				}
			}
		}
	}
	finished := errors.New("finished")
	var err error
	if len(pending) > 0 {
		err = c.FollowEvents(ctx, res.EventID, func(ev api.Event) error {
			if !pending[ev.Subject] {
				return nil
			}
			switch ev.Type {
			case api.EventAppState:
				// An agent that runs what it installs reports each step; the release is in once
				// it runs, verified, and out when it rolled back or failed.
				var p api.AppStateChanged
				if ev.Decode(&p) != nil || p.App != app || p.Version != ver {
					break
				}
				switch p.To {
				case api.AppStateRunning, api.AppStateStopped:
					done(ev.Subject, true, "")
				case api.AppStateRolledBack, api.AppStateFailed:
					done(ev.Subject, false, p.To+": "+p.Reason)
				default:
					say("%s: %s %s", ev.Subject, res.Release, p.To)
				}
			case api.EventAppFailed:
				var p api.AppFailed
				switch {
				case ev.Decode(&p) != nil || p.App != app || p.Version != ver:
				case p.Retry:
					say("%s: %s; retrying", ev.Subject, p.Error)
				default:
					done(ev.Subject, false, p.Error)
				}
			}
			if len(pending) == 0 {
				return finished
			}
			return nil
		})
	}
	for n := range pending {
		out.Waiting = append(out.Waiting, n)
	}
	sort.Strings(out.Installed)
	sort.Strings(out.Failed)
	sort.Strings(out.Waiting)
	switch {
	case err != nil && !errors.Is(err, finished) && !errors.Is(err, context.DeadlineExceeded):
		return out, err
	case len(out.Waiting) > 0:
		return out, fmt.Errorf("timed out: %d of %d node(s) installed %s; still waiting on %s", len(out.Installed), total, safe(res.Release), safe(strings.Join(out.Waiting, ", ")))
	case len(out.Failed) > 0:
		return out, fmt.Errorf("%d of %d node(s) gave up on %s: %s", len(out.Failed), total, safe(res.Release), safe(strings.Join(out.Failed, ", ")))
	}
	return out, nil
}
