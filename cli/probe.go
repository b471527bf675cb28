package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

func (e *env) probeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "probe", Short: "Measure TCP throughput and round trips between nodes' agents"}
	var req api.ProbeStart
	var bytes string
	var duration time.Duration
	var wait bool
	mesh := &cobra.Command{
		Use:   "mesh --selector SEL [--bytes N] [--duration D] [--wait]",
		Short: "Measure throughput and round trips between every pair of the selected nodes (admin)",
		Long: fmt.Sprintf(`Measure between every pair of the nodes a selector selects (%d at most): for each pair, one
agent opens a short-lived listener on a port it picks, the other connects, measures %d round trips,
then sends --bytes each way. Each node takes part in one pair at a time, and at most %d pairs run
at once; a pair may take --duration, plus %s to set up. A pair whose node is down or silent gets
an error; the probe completes all the same. The matrix is stored: ferry probe show ID.
Without --wait the probe's id is printed and it runs on; with --wait, the matrix once complete.`,
			api.MaxProbeNodes, api.ProbePings, api.MaxProbeParallel, api.ProbeSetup),
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Selector == "" {
				return Usagef("probe mesh: give --selector, e.g. --selector site=ams (at most %d nodes)", api.MaxProbeNodes)
			}
			n, err := parseBytes(bytes)
			if err != nil {
				return Usagef("probe mesh: --bytes: %v", err)
			}
			req.Bytes, req.Duration = n, api.Duration(duration)
			if err := req.Normalize(); err != nil {
				return UsageError{fmt.Errorf("probe mesh: %w", err)}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			p, err := c.StartProbe(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !wait {
				if e.json() {
					return e.printJSON(p)
				}
				e.printf("%d\n", p.ID)
				fmt.Fprintf(e.stderr, "probe %d started over %d nodes (%d connections); see ferry probe show %d\n", p.ID, len(p.Nodes), p.Links, p.ID)
				return nil
			}
			if p, err = e.waitProbe(cmd.Context(), c, p); err != nil {
				return err
			}
			return e.showProbe(p)
		},
	}
	f := mesh.Flags()
	f.StringVar(&req.Selector, "selector", "", "the nodes to measure between: site=ams,role=mirror")
	f.StringVar(&bytes, "bytes", "16MiB", fmt.Sprintf("bytes sent each way per pair: N, NKiB or NMiB (%d KiB to %d MiB)", api.MinProbeBytes>>10, api.MaxProbeBytes>>20))
	f.DurationVar(&duration, "duration", api.DefaultProbeDuration, fmt.Sprintf("how long one pair may take (%s to %s)", api.MinProbeDuration, api.MaxProbeDuration))
	f.BoolVar(&wait, "wait", false, "wait until every pair is measured, and show the matrix")

	list := listVerb(e, "list", "List the latest probes, newest first", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Probe, error) { return c.Probes(ctx) },
		[]string{"ID", "STATE", "SELECTOR", "NODES", "CONNECTIONS", "MEASURED", "FAILED", "CREATED"},
		func(p api.Probe) []string {
			return []string{strconv.FormatInt(p.ID, 10), p.State, p.Selector, strconv.Itoa(len(p.Nodes)), strconv.Itoa(p.Links),
				strconv.Itoa(p.Done), strconv.Itoa(p.Failed), p.CreatedAt.Format(time.RFC3339)}
		})
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a probe's matrix: throughput (Mbit/s) and mean round trip (ms) from each row's node to each column's",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := strconv.ParseInt(a[0], 10, 64)
			if err != nil || id <= 0 {
				return Usagef("probe show: invalid id %q: want a number (ferry probe list)", a[0])
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			p, err := c.Probe(cmd.Context(), id)
			if err != nil {
				return err
			}
			return e.showProbe(p)
		},
	}
	cmd.AddCommand(mesh, list, show)
	return cmd
}

// parseBytes reads N, NKiB or NMiB.
func parseBytes(s string) (int64, error) {
	num, mult := s, int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20} {
		if strings.HasSuffix(s, suffix) {
			num, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > api.MaxProbeBytes/mult {
		return 0, fmt.Errorf("invalid size %q: want N, NKiB or NMiB, at most %d MiB", s, api.MaxProbeBytes>>20)
	}
	return n * mult, nil
}

// waitProbe follows the event log until p completes, telling each pair's end on stderr, and
// returns it complete.
func (e *env) waitProbe(ctx context.Context, c *client.Client, p api.Probe) (api.Probe, error) {
	subject := api.ProbeSubject(p.ID)
	fmt.Fprintf(e.stderr, "probe %d: measuring %d connections between %d nodes\n", p.ID, p.Links, len(p.Nodes))
	finished := errors.New("finished")
	done := 0
	err := c.FollowEvents(ctx, p.Event, func(ev api.Event) error {
		if ev.Subject != subject {
			return nil
		}
		switch ev.Type {
		case api.EventProbeLinkDone:
			var d api.ProbeLinkDone
			if ev.Decode(&d) != nil {
				return nil
			}
			done++
			if d.Error != "" {
				fmt.Fprintf(e.stderr, "%s ↔ %s: %s (%d/%d)\n", safe(d.From), safe(d.To), safe(d.Error), done, p.Links)
			} else {
				fmt.Fprintf(e.stderr, "%s ↔ %s: measured (%d/%d)\n", safe(d.From), safe(d.To), done, p.Links)
			}
		case api.EventProbeCompleted:
			return finished
		}
		return nil
	})
	if !errors.Is(err, finished) {
		return p, err
	}
	return c.Probe(ctx, p.ID)
}

// showProbe prints a probe: as JSON, or as a matrix with its failed pairs listed below.
func (e *env) showProbe(p api.Probe) error {
	if e.json() {
		return e.printJSON(p)
	}
	e.printf("probe %d: %s, %d nodes (%s), %d of %d connections measured, %d failed\n", p.ID, p.State, len(p.Nodes), p.Selector, p.Done, p.Links, p.Failed)
	e.printf("throughput Mbit/s / mean round trip ms, from each row's node to each column's\n\n")
	cell := map[[2]string]api.Pair{}
	for _, pr := range p.Pairs {
		cell[[2]string{pr.From, pr.To}] = pr
	}
	header := append([]string{"FROM \\ TO"}, p.Nodes...)
	var rows [][]string
	var failed []string
	for _, from := range p.Nodes {
		row := []string{from}
		for _, to := range p.Nodes {
			pr, ok := cell[[2]string{from, to}]
			switch {
			case from == to || !ok:
				row = append(row, "-")
			case pr.State == api.LinkDone:
				row = append(row, fmt.Sprintf("%.1f / %.2f", pr.Mbps, pr.RTTms.Avg))
			case pr.State == api.LinkFailed:
				row = append(row, "error")
				if from < to {
					failed = append(failed, fmt.Sprintf("%s ↔ %s: %s", from, to, pr.Error))
				}
			default:
				row = append(row, pr.State)
			}
		}
		rows = append(rows, row)
	}
	if err := e.table(header, rows); err != nil {
		return err
	}
	if len(failed) > 0 {
		e.printf("\n")
		for _, f := range failed {
			e.printf("%s\n", f)
		}
	}
	return nil
}
