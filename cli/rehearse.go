package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/spf13/cobra"
)

// rolloutRehearseCmd is `ferry rollout rehearse`: the rollout run against a simulated copy of
// today's fleet, in simulated time, on the server; nothing changes.
func (e *env) rolloutRehearseCmd() *cobra.Command {
	var policy, sel, failRate, offlineRate string
	var set []string
	var req api.RolloutRehearse
	var install time.Duration
	cmd := &cobra.Command{
		Use:   "rehearse APP@VER [--policy NAME|FILE] [--selector SEL] [--set WAVE.FIELD=VALUE]... [--fail-rate F] [--offline-rate F] [--seed N] [--install-time D]",
		Short: "Rehearse a rollout on a simulated copy of today's fleet: when each wave would end, where it would halt; changes nothing",
		Long: `Rehearse a rollout on a simulated copy of today's fleet, in simulated time: the plan's nodes as
they are now, run through the rollout engine's own decisions, print when each wave would start,
become healthy and end, and where the rollout would halt and how long its rollback would take.
Nothing changes: no rollout is started and no node is touched.

The simulated fleet: each node fails the release (its agent rolls back) with --fail-rate and is
down throughout with --offline-rate, drawn from --seed and its name (the same seed, the same
rehearsal); nodes down now stay down. A node takes --install-time plus its wave's
min_healthy_time to be healthy, or to report its failure; putting it back takes as long.
Approvals and site acknowledgements are taken as given at once, feedback windows pass with no
bad report; the output lists what it assumed.`,
		Args: Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var err error
			if req.RolloutStart, err = startRequest("rehearse", a[0], sel, policy, set); err != nil {
				return err
			}
			if req.FailRate, err = chance("--fail-rate", failRate); err != nil {
				return err
			}
			if req.OfflineRate, err = chance("--offline-rate", offlineRate); err != nil {
				return err
			}
			if install < 0 {
				return Usagef("rollout rehearse: --install-time %v is negative", install)
			}
			req.InstallTime = api.Duration(install)
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.RehearseRollout(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(r)
			}
			return e.printRehearsal(r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&policy, "policy", "", "a built-in policy's name, or a policy file (YAML)")
	f.StringVarP(&sel, "selector", "l", "", "the nodes to take (default: every node the app is assigned to)")
	f.StringArrayVar(&set, "set", nil, "override a duration or limit of the policy, e.g. pilot.soak=2d (repeatable): what if")
	f.StringVar(&failRate, "fail-rate", "0", "chance that the release fails on a node: 0.05 or 5%")
	f.StringVar(&offlineRate, "offline-rate", "0", "chance that a node is down throughout: 0.02 or 2%")
	f.Int64Var(&req.Seed, "seed", 0, "picks the failing and the offline nodes: the same seed, the same rehearsal")
	f.DurationVar(&install, "install-time", 0, "how long a node takes to download, unpack and start the release (default: the server's estimate, 30s)")
	return cmd
}

// chance reads a rate flag: 0.05 or 5%, from 0 to 1.
func chance(flag, s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if strings.HasSuffix(s, "%") {
		v /= 100
	}
	if err != nil || !(v >= 0 && v <= 1) {
		return 0, Usagef("rollout rehearse: %s %q: want a chance from 0 to 1, like 0.05 or 5%%", flag, s)
	}
	return v, nil
}

func (e *env) printRehearsal(r api.RolloutRehearsal) error {
	nodes := 0
	for _, w := range r.Waves {
		nodes += w.Nodes
	}
	e.printf("%s by policy %s, rehearsed on %d node(s): %d failing, %d down throughout\n", r.Release, r.Policy, nodes, r.Failing, r.Offline)
	e.printf("(seed %d, fail rate %s, offline rate %s, install time %s)\n", r.Seed, percent(r.FailRate), percent(r.OfflineRate), span(r.InstallTime))
	rows := make([][]string, 0, len(r.Waves))
	unreachable := 0
	for _, w := range r.Waves {
		unreachable += w.Unreachable
		rows = append(rows, []string{w.Name, strconv.Itoa(w.Nodes), strconv.Itoa(w.Done), strconv.Itoa(w.Failed), strconv.Itoa(w.Unreachable),
			offset(w.Started), offset(w.Healthy), offset(w.Finished)})
	}
	if err := e.table([]string{"WAVE", "NODES", "DONE", "FAILED", "UNREACHABLE", "STARTS", "HEALTHY", "ENDS"}, rows); err != nil {
		return err
	}
	switch r.Outcome {
	case api.RehearsalCompleted:
		e.printf("completes after %s", span(r.Took))
		if unreachable > 0 {
			e.printf("; %d unreachable node(s) left behind, moved when they return", unreachable)
		}
		e.printf("\n")
	case api.RehearsalHalted, api.RehearsalRolledBack:
		if h := r.Halt; h != nil {
			e.printf("halts in wave %s after %s: %s\n", h.Wave, span(h.At), h.Reason)
		}
		if rb := r.Rollback; rb != nil {
			e.printf("rolls back %d node(s) in %s, all back after %s", rb.Nodes, span(rb.Took), span(r.Took))
			if rb.Failed > 0 {
				e.printf("; %d do not go back", rb.Failed)
			}
			e.printf("\n")
		} else {
			e.printf("its nodes stay as they are until an operator retries, rolls back or aborts (on_failure: pause)\n")
		}
	default:
		e.printf("rehearsal unfinished: %s\n", r.Note)
	}
	for _, a := range r.Assumed {
		e.printf("assumed: %s\n", a)
	}
	if len(r.Skipped) > 0 {
		e.printf("skipped: %s (no node)\n", strings.Join(r.Skipped, ", "))
	}
	if r.Left > 0 {
		e.printf("left: %d target node(s) in no wave stay as they are\n", r.Left)
	}
	e.printf("nothing was changed\n")
	return nil
}

// offset renders a time from the start of a rehearsal; "-" when it never came.
func offset(d *api.Duration) string {
	if d == nil {
		return "-"
	}
	return "+" + span(*d)
}

// span renders a duration in days and below as a policy writes it: 7d, 1d2h, 1h30m, 40s.
func span(d api.Duration) string {
	const day = 24 * time.Hour
	days, rest := time.Duration(d)/day, time.Duration(d)%day
	var b strings.Builder
	if days > 0 {
		fmt.Fprintf(&b, "%dd", days)
	}
	if rest > 0 || days == 0 {
		s := rest.String() // 1h0m0s, 5m0s, 40s
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		b.WriteString(s)
	}
	return b.String()
}

func percent(v float64) string {
	return strconv.FormatFloat(v*100, 'f', -1, 64) + "%"
}
