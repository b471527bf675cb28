package cli

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

func (e *env) checkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "check", Short: "Health checks that agents run on the nodes a selector picks"}
	var spec api.CheckSpec
	var exec bool
	var interval, retryInterval, timeout time.Duration
	add := &cobra.Command{
		Use:   "add NAME --selector SEL (--exec -- CMD ARGS... | --http URL | --tcp HOST:PORT | --disk PATH [--warn 10%] [--crit 5%])",
		Short: "Add a check that every node the selector picks runs",
		Long: "An --exec check runs a Nagios plugin (everything after -- is its command line, run without a\n" +
			"shell): exit 0/1/2/3 is OK/WARNING/CRITICAL/UNKNOWN. --http is OK on a 2xx answer, --tcp when a\n" +
			"connection is accepted, --disk while free space is above --warn and --crit (a percentage or a\n" +
			"size such as 5GiB). A non-OK state becomes hard after --retries runs in a row; a hard change\n" +
			"raises or clears an alert (ferry alert list).",
		Args: Args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dash := cmd.ArgsLenAtDash()
			switch {
			case exec && dash != 1:
				return Usagef("check add: give the plugin's command line after --: check add NAME --selector SEL --exec -- /usr/lib/nagios/plugins/check_load -w 5 -c 10")
			case !exec && len(a) != 1:
				return Usagef("check add: one NAME, then flags; a command line goes after --exec --")
			}
			spec.Name = a[0]
			if exec {
				spec.Exec = a[1:]
			}
			if kinds := btoi(exec) + btoi(spec.HTTP != "") + btoi(spec.TCP != "") + btoi(spec.Disk != ""); kinds != 1 {
				return Usagef("check add: give exactly one of --exec -- CMD ARGS..., --http URL, --tcp HOST:PORT or --disk PATH")
			}
			spec.Interval, spec.RetryInterval, spec.Timeout = api.Duration(interval), api.Duration(retryInterval), api.Duration(timeout)
			c, err := e.client()
			if err != nil {
				return err
			}
			added, err := c.AddCheck(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(added)
			}
			e.printf("check %s added for nodes matching %s\n", added.Name, added.Selector)
			return nil
		},
	}
	f := add.Flags()
	f.StringVar(&spec.Selector, "selector", "", "the nodes that run the check, e.g. role=mirror,site=ams")
	f.BoolVar(&exec, "exec", false, "run the Nagios plugin whose command line follows --")
	f.StringVar(&spec.HTTP, "http", "", "GET this http:// or https:// URL")
	f.StringVar(&spec.TCP, "tcp", "", "connect to this HOST:PORT")
	f.StringVar(&spec.Disk, "disk", "", "check the free space of the file system holding this path")
	f.StringVar(&spec.Warn, "warn", "", "--disk: WARNING at or below this free space (default 10%)")
	f.StringVar(&spec.Crit, "crit", "", "--disk: CRITICAL at or below this free space (default 5%)")
	f.DurationVar(&interval, "interval", 0, "time between runs (default 1m)")
	f.DurationVar(&retryInterval, "retry-interval", 0, "time between runs while a non-OK state is soft (default interval/4)")
	f.DurationVar(&timeout, "timeout", 0, "bound of one run (default 10s)")
	f.IntVar(&spec.Retries, "retries", 0, "runs in a row before a non-OK state is hard (default 3)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List checks with their latest result on each node",
		Args:  Args(noArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			checks, err := c.Checks(cmd.Context())
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(checks)
			}
			var rows [][]string
			for _, ch := range checks {
				if len(ch.Results) == 0 {
					rows = append(rows, []string{ch.Name, "-", "-", "-", "", checkWhat(ch.CheckSpec)})
				}
				for _, r := range ch.Results {
					state := r.State
					if !r.Hard {
						state += " (soft)"
					}
					if r.Flapping {
						state += " (flapping)"
					}
					rows = append(rows, []string{ch.Name, r.Node, state, r.Time.Format(time.RFC3339), r.Output, checkWhat(ch.CheckSpec)})
				}
			}
			return e.table([]string{"CHECK", "NODE", "STATE", "TIME", "OUTPUT", "WHAT"}, rows)
		},
	}
	var node string
	var since time.Duration
	history := listVerb(e, "history CHECK --node NODE [--since 24h]", "Show a check's history on a node, in buckets of five minutes (or of an hour past two days)", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, a []string) ([]api.CheckBucket, error) {
			if node == "" {
				return nil, Usagef("check history: give --node")
			}
			return c.CheckHistory(ctx, a[0], node, since)
		},
		[]string{"START", "WORST", "RUNS", "PERF (MIN/AVG/MAX)"},
		func(b api.CheckBucket) []string {
			var perf []string
			for _, p := range b.Perf {
				perf = append(perf, p.Label+"="+fmtFloat(p.Min)+"/"+fmtFloat(p.Avg)+"/"+fmtFloat(p.Max))
			}
			return []string{b.Start.Format(time.RFC3339), b.Worst, strconv.Itoa(b.Count), strings.Join(perf, " ")}
		})
	history.Flags().StringVar(&node, "node", "", "the node")
	history.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back (at most 720h)")
	rm := removeVerb(e, "rm NAME", "Remove a check; its nodes stop running it and its open alerts clear", "check",
		func(ctx context.Context, c *client.Client, name string) error { return c.RemoveCheck(ctx, name) })
	cmd.AddCommand(add, list, history, rm)
	return cmd
}

// checkWhat says in a few words what a check runs; a manifest's check says its app.
func checkWhat(c api.CheckSpec) string {
	switch {
	case len(c.Exec) > 0:
		return "exec " + strings.Join(c.Exec, " ")
	case c.HTTP != "":
		return "http " + c.HTTP
	case c.TCP != "":
		return "tcp " + c.TCP
	case c.Disk != "":
		return "disk " + c.Disk
	}
	return "manifest"
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// removeVerb is a verb that removes one thing by its name or id, and says so: "check load
// removed".
func removeVerb(e *env, use, short, what string, remove func(ctx context.Context, c *client.Client, name string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := remove(cmd.Context(), c, a[0]); err != nil {
				return err
			}
			e.printf("%s %s removed\n", what, a[0])
			return nil
		},
	}
}

// btoi is 1 for true.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
