package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) appCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "app", Short: "See how an app runs across the fleet; stop, start and restart it"}
	var sel string
	status := &cobra.Command{
		Use:   "status APP [--selector SEL]",
		Short: "Count the nodes by the app's version and state, and list the unhappy ones",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := labels.CheckName("app name", a[0]); err != nil {
				return UsageError{err}
			}
			if _, err := labels.ParseSelector(sel); err != nil {
				return UsageError{err}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := appStatus(cmd.Context(), c, a[0], sel)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(st)
			}
			return e.printAppStatus(st)
		},
	}
	status.Flags().StringVarP(&sel, "selector", "l", "", "only nodes matching this label selector, e.g. site=ams")
	cmd.AddCommand(status,
		e.controlCmd(api.AppStop, "Stop an app's processes on nodes; they stay stopped, across agent restarts, until started"),
		e.controlCmd(api.AppStart, "Start an app that was stopped on nodes"),
		e.controlCmd(api.AppRestart, "Restart an app's processes on nodes, a few nodes at a time"))
	return cmd
}

// AppStatus is `ferry app status -o json`: how many nodes run the app at each version and
// state, and the nodes that are not running the release they are assigned.
type AppStatus struct {
	App     string          `json:"app"`
	Nodes   int             `json:"nodes"`
	Groups  []AppGroup      `json:"groups"`
	Unhappy []AppNodeStatus `json:"unhappy"`
}

// AppGroup counts the nodes at one version and state.
type AppGroup struct {
	Version string `json:"version"`
	State   string `json:"state"`
	Nodes   int    `json:"nodes"`
}

// AppNodeStatus is one node's view of the app.
type AppNodeStatus struct {
	Node     string `json:"node"`
	Site     string `json:"site"`
	Status   string `json:"status"` // the node's: up or down
	Version  string `json:"version,omitempty"`
	Assigned string `json:"assigned,omitempty"`
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
}

// appStatus gathers the app's status on the nodes sel matches that have it assigned or
// report it.
func appStatus(ctx context.Context, c *client.Client, app, sel string) (AppStatus, error) {
	nodes, err := c.Nodes(ctx, client.NodeQuery{Selector: sel})
	if err != nil {
		return AppStatus{}, err
	}
	st := AppStatus{App: app, Groups: []AppGroup{}, Unhappy: []AppNodeStatus{}}
	groups := map[[2]string]int{}
	for _, n := range nodes {
		ns, ok := nodeAppStatus(n, app)
		if !ok {
			continue
		}
		st.Nodes++
		groups[[2]string{ns.Version, ns.State}]++
		if unhappy(ns) {
			st.Unhappy = append(st.Unhappy, ns)
		}
	}
	for k, n := range groups {
		st.Groups = append(st.Groups, AppGroup{Version: k[0], State: k[1], Nodes: n})
	}
	slices.SortFunc(st.Groups, func(a, b AppGroup) int {
		return cmp.Or(cmp.Compare(b.Nodes, a.Nodes), cmp.Compare(a.Version, b.Version), cmp.Compare(a.State, b.State))
	})
	slices.SortFunc(st.Unhappy, func(a, b AppNodeStatus) int { return cmp.Compare(a.Node, b.Node) })
	return st, nil
}

// nodeAppStatus is the app's status on n; false when n neither runs nor is assigned it.
func nodeAppStatus(n api.Node, app string) (AppNodeStatus, bool) {
	ns := AppNodeStatus{Node: n.Name, Site: n.Site, Status: n.Status}
	var found bool
	for _, a := range n.Assigned {
		if a.App == app {
			ns.Assigned, found = a.Version, true
		}
	}
	for _, a := range n.Apps {
		if a.App != app {
			continue
		}
		found = true
		ns.Version, ns.State, ns.Error = a.Version, a.State, a.Error
		if ns.State == "" {
			// An agent that does not run what it installs reports versions only.
			ns.State = "installed"
			if a.Version == "" {
				ns.State = "pending"
			}
		}
	}
	if found && ns.State == "" {
		ns.State = "pending" // assigned, not reported yet
	}
	return ns, found
}

// unhappy tells whether a node needs an operator's look: it is down, not running the release
// it is assigned, or its app is anywhere but running (or stopped on purpose).
func unhappy(ns AppNodeStatus) bool {
	switch {
	case ns.Status != api.StatusUp:
		return true
	case ns.Assigned != "" && ns.Version != ns.Assigned:
		return true
	}
	return ns.State != api.AppStateRunning && ns.State != api.AppStateStopped && ns.State != "installed"
}

func (e *env) printAppStatus(st AppStatus) error {
	if st.Nodes == 0 {
		e.printf("no node runs or is assigned %s\n", st.App)
		return nil
	}
	rows := make([][]string, 0, len(st.Groups))
	for _, g := range st.Groups {
		rows = append(rows, []string{dash(g.Version), g.State, fmt.Sprint(g.Nodes)})
	}
	if err := e.table([]string{"VERSION", "STATE", "NODES"}, rows); err != nil {
		return err
	}
	if len(st.Unhappy) == 0 {
		e.printf("\nall %d nodes run their assigned release\n", st.Nodes)
		return nil
	}
	e.printf("\n%d of %d nodes need a look:\n", len(st.Unhappy), st.Nodes)
	rows = rows[:0]
	for _, u := range st.Unhappy {
		rows = append(rows, []string{u.Node, u.Site, u.Status, dash(u.Version), dash(u.Assigned), u.State, dash(oneLine(u.Error))})
	}
	return e.table([]string{"NODE", "SITE", "NODE STATUS", "RUNS", "ASSIGNED", "STATE", "WHY"}, rows)
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// controlCmd is `ferry app stop|start|restart`: the action on every node a selector matches
// that has the app assigned, in a sliding window of maxParallel nodes (0: all at once), each
// node's turn ending when its agent reports the app stopped, running again, or failing.
func (e *env) controlCmd(action, short string) *cobra.Command {
	var sel string
	var all bool
	var maxParallel int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   action + " APP --selector SEL | --all [--max-parallel N] [--timeout D]",
		Short: short,
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app := a[0]
			if err := labels.CheckName("app name", app); err != nil {
				return UsageError{err}
			}
			switch {
			case sel != "" && all:
				return Usagef("app %s: give --selector or --all, not both", action)
			case all:
				sel = labels.KeySite
			case sel == "":
				return Usagef("app %s: give --selector SEL (e.g. site=ams) or --all", action)
			}
			if _, err := labels.ParseSelector(sel); err != nil {
				return UsageError{err}
			}
			if maxParallel < 0 || timeout <= 0 {
				return Usagef("app %s: --max-parallel must be 0 or more and --timeout positive", action)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context(), client.NodeQuery{Selector: sel})
			if err != nil {
				return err
			}
			var names []string
			for _, n := range nodes {
				if slices.ContainsFunc(n.Assigned, func(as api.Assignment) bool { return as.App == app }) {
					names = append(names, n.Name)
				}
			}
			if len(names) == 0 {
				return fmt.Errorf("no node that matches %s has %s assigned; nothing to %s", labels.Quote(sel), app, action)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			out := e.controlAll(ctx, c, app, action, names, maxParallel)
			if e.json() {
				if err := e.printJSON(out); err != nil {
					return err
				}
			}
			if n := len(out.Failed) + len(out.Waiting); n > 0 {
				return fmt.Errorf("%s %s: %d of %d node(s) did not get there (%d failed, %d still waiting)", action, app, n, len(names), len(out.Failed), len(out.Waiting))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "every node this selector matches that has the app")
	cmd.Flags().BoolVar(&all, "all", false, "every node that has the app")
	cmd.Flags().IntVar(&maxParallel, "max-parallel", 1, "nodes at a time; the next starts as soon as one is done (0: all at once)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for the nodes in all")
	return cmd
}

// ControlOutcome is what `ferry app stop|start|restart -o json` prints.
type ControlOutcome struct {
	App     string   `json:"app"`
	Action  string   `json:"action"`
	Done    []string `json:"done"`
	Failed  []string `json:"failed"`
	Waiting []string `json:"waiting"`
}

// controlAll carries out action on the nodes, at most maxParallel at a time (0: all).
func (e *env) controlAll(ctx context.Context, c *client.Client, app, action string, names []string, maxParallel int) ControlOutcome {
	if maxParallel == 0 || maxParallel > len(names) {
		maxParallel = len(names)
	}
	out := ControlOutcome{App: app, Action: action, Done: []string{}, Failed: []string{}, Waiting: []string{}}
	var mu sync.Mutex
	slots := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for _, name := range names {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			out.Waiting = append(out.Waiting, name)
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			ok, why := e.controlOne(ctx, c, app, action, name)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case ok:
				out.Done = append(out.Done, name)
				if !e.json() {
					e.printf("%s: %s %s\n", name, app, pastTense[action])
				}
			case ctx.Err() != nil:
				out.Waiting = append(out.Waiting, name)
				if !e.json() {
					e.printf("%s: no word yet\n", name)
				}
			default:
				out.Failed = append(out.Failed, name)
				if !e.json() {
					e.printf("%s: %s\n", name, why)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

var pastTense = map[string]string{api.AppStop: "stopped", api.AppStart: "started", api.AppRestart: "restarted"}

// controlOne asks for the action on one node and waits until its agent reports it done, or the
// app failing there; it says why not when it was not done.
func (e *env) controlOne(ctx context.Context, c *client.Client, app, action, name string) (bool, string) {
	res, err := c.ControlApp(ctx, api.AppControl{App: app, Action: action, Nodes: []string{name}})
	if err != nil {
		return false, err.Error()
	}
	if len(res.Nodes) == 0 {
		return true, "" // nothing to change: stopped or started already
	}
	var target int64
	if action == api.AppRestart {
		n, err := c.Node(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		for _, as := range n.Assigned {
			if as.App == app {
				target = as.Restarts
			}
		}
	}
	var why string
	_, err = c.WaitEvent(ctx, res.EventID, func(ev api.Event) bool {
		if ev.Subject != name {
			return false
		}
		switch ev.Type {
		case api.EventAppRestarted:
			var p api.AppRestarted
			return action == api.AppRestart && ev.Decode(&p) == nil && p.App == app && p.Restarts >= target
		case api.EventAppState:
			var p api.AppStateChanged
			if ev.Decode(&p) != nil || p.App != app {
				return false
			}
			switch p.To {
			case api.AppStateStopped:
				return action == api.AppStop
			case api.AppStateRunning:
				return action == api.AppStart
			case api.AppStateFailed, api.AppStateCrashloop:
				why = p.To + ": " + p.Reason
				return true
			}
		}
		return false
	})
	if err != nil {
		return false, err.Error()
	}
	return why == "", why
}
