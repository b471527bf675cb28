package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) appCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "app", Short: "See how an app runs across the fleet"}
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
	cmd.AddCommand(status)
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
