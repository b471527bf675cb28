package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// maxPolicyFile bounds a policy file read for --policy (the server takes no more).
const maxPolicyFile = 64 << 10

// rolloutVerbs are `ferry rollout`'s verbs besides policy.
func (e *env) rolloutVerbs() []*cobra.Command {
	return []*cobra.Command{
		e.rolloutStartCmd("plan", "Show the waves a rollout would take, node counts per site and the schedule; changes nothing"),
		e.rolloutStartCmd("start", "Start a rollout: nodes move to the release wave by wave, behind the policy's gates"),
		e.rolloutRehearseCmd(),
		e.rolloutStatusCmd(),
		listVerb(e, "list [APP]", "List the latest rollouts, newest first", cobra.MaximumNArgs(1),
			func(ctx context.Context, c *client.Client, a []string) ([]api.Rollout, error) {
				app := ""
				if len(a) == 1 {
					app = a[0]
				}
				return c.Rollouts(ctx, app)
			},
			[]string{"ID", "RELEASE", "POLICY", "STATE", "WAVE", "PROGRESS", "STARTED"},
			func(r api.Rollout) []string {
				return []string{strconv.FormatInt(r.ID, 10), r.Release, r.Policy, r.State, r.Wave, progressOf(r), r.CreatedAt.Format(time.RFC3339)}
			}),
		e.rolloutActCmd("pause", "pause ID", "Stop starting nodes; those moving finish", nil),
		e.rolloutActCmd("resume", "resume ID", "Go on with a paused rollout", nil),
		e.rolloutActCmd("abort", "abort ID [--rollback] [--reason TEXT]", "End a rollout where it is, or put back the nodes it moved", func(cmd *cobra.Command, req *api.RolloutAction) {
			cmd.Flags().BoolVar(&req.Rollback, "rollback", false, "put back every node the rollout moved")
			cmd.Flags().StringVar(&req.Text, "reason", "", "why, for the record")
		}),
		e.rolloutActCmd("retry", "retry ID", "Go on after a halt or an abort: failed nodes are tried again", nil),
		e.rolloutActCmd("rollback", "rollback ID [--reason TEXT]", "Put back every node the rollout moved, within the policy's limits", func(cmd *cobra.Command, req *api.RolloutAction) {
			cmd.Flags().StringVar(&req.Text, "reason", "", "why, for the record")
		}),
		e.rolloutActCmd("approve", "approve ID", "Approve the wave waiting for an approval", nil),
		e.rolloutActCmd("ack", "ack ID --site S", "Acknowledge the wave in hand for a site: its nodes may move", func(cmd *cobra.Command, req *api.RolloutAction) {
			cmd.Flags().StringVar(&req.Site, "site", "", "the site that acknowledges")
		}),
		e.rolloutReportCmd(),
	}
}

// startRequest reads what plan, start and rehearse share: APP@VER, the selector, the policy
// (a name or a file) and the overrides.
func startRequest(verb, ref, sel, policy string, set []string) (api.RolloutStart, error) {
	app, ver, err := splitRelease("rollout "+verb, ref)
	if err != nil {
		return api.RolloutStart{}, err
	}
	if _, err := labels.ParseSelector(sel); err != nil {
		return api.RolloutStart{}, UsageError{err}
	}
	req := api.RolloutStart{App: app, Version: ver, Selector: sel, Set: set}
	return req, policyFlag(&req, policy)
}

// policyFlag sets a start request's policy from --policy: a file's text when it names a file,
// else a built-in policy's name.
func policyFlag(req *api.RolloutStart, policy string) error {
	if policy == "" {
		return nil
	}
	f, err := os.Open(policy)
	if errors.Is(err, os.ErrNotExist) && !strings.ContainsAny(policy, "/.") {
		req.Policy = policy
		return nil
	}
	if err != nil {
		return fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return fmt.Errorf("policy file: %w", err)
	}
	if len(b) > maxPolicyFile {
		return Usagef("policy file %s is larger than %d bytes", policy, maxPolicyFile)
	}
	req.PolicyYAML = string(b)
	return nil
}

func (e *env) rolloutStartCmd(verb, short string) *cobra.Command {
	var policy, sel string
	var set []string
	cmd := &cobra.Command{
		Use:   verb + " APP@VER [--policy NAME|FILE] [--selector SEL] [--set WAVE.FIELD=VALUE]...",
		Short: short,
		Long: short + ".\n\nWithout --selector the rollout takes every node the app is assigned to. Without --policy it follows\n" +
			"the built-in policy of the release's class (ferry rollout policy list).",
		Args: Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			req, err := startRequest(verb, a[0], sel, policy, set)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if verb == "plan" {
				p, err := c.PlanRollout(cmd.Context(), req)
				if err != nil {
					return err
				}
				if e.json() {
					return e.printJSON(p)
				}
				return e.printPlan(p)
			}
			r, err := c.StartRollout(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(r)
			}
			e.printf("rollout %d started: %s by policy %s, %d wave(s)\n", r.ID, r.Release, r.Policy, len(r.Waves))
			e.printf("follow with: ferry rollout status %d --watch\n", r.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "a built-in policy's name, or a policy file (YAML)")
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "the nodes to take (default: every node the app is assigned to)")
	cmd.Flags().StringArrayVar(&set, "set", nil, "override a duration or limit of the policy, e.g. pilot.soak=2d or *.max_parallel=10% (repeatable)")
	return cmd
}

func (e *env) printPlan(p api.RolloutPlan) error {
	e.printf("%s by policy %s\n", p.Release, p.Policy)
	rows := make([][]string, 0, len(p.Waves))
	var total time.Duration
	change := 0
	for _, w := range p.Waves {
		total += time.Duration(w.Estimate)
		change += w.Change
		rows = append(rows, []string{w.Name, strconv.Itoa(w.Nodes), strconv.Itoa(w.Change), sitesOf(w.Sites), dash(strings.Join(w.Gates, "; ")),
			span(w.Estimate), span(api.Duration(total))})
	}
	if err := e.table([]string{"WAVE", "NODES", "TO CHANGE", "SITES", "GATES", "TAKES", "DONE AFTER"}, rows); err != nil {
		return err
	}
	if change == 0 {
		e.printf("every node already runs %s: nothing to change\n", p.Release)
	}
	return nil
}

func sitesOf(m map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", name, m[name]))
	}
	return strings.Join(parts, " ")
}

func progressOf(r api.Rollout) string {
	nodes, done := 0, 0
	for _, w := range r.Waves {
		nodes += w.Nodes
		done += w.Done
	}
	return fmt.Sprintf("%d/%d", done, nodes)
}

func rolloutIDArg(verb, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, Usagef("rollout %s: %q is not a rollout id (ferry rollout list shows them)", verb, s)
	}
	return id, nil
}

func (e *env) rolloutActCmd(action, use, short string, flags func(*cobra.Command, *api.RolloutAction)) *cobra.Command {
	var req api.RolloutAction
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := rolloutIDArg(action, a[0])
			if err != nil {
				return err
			}
			if action == "ack" && req.Site == "" {
				return Usagef("rollout ack: give --site SITE")
			}
			return e.act(cmd.Context(), id, action, req)
		},
	}
	if flags != nil {
		flags(cmd, &req)
	}
	return cmd
}

func (e *env) act(ctx context.Context, id int64, action string, req api.RolloutAction) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	r, err := c.ActOnRollout(ctx, id, action, req)
	if err != nil {
		return err
	}
	if e.json() {
		return e.printJSON(r)
	}
	e.printf("rollout %d (%s): %s\n", r.ID, r.Release, r.State)
	return nil
}

func (e *env) rolloutReportCmd() *cobra.Command {
	var req api.RolloutAction
	var good, bad bool
	cmd := &cobra.Command{
		Use:   "report ID --site S --good|--bad TEXT",
		Short: "Report how the release does at a site: a bad report halts the rollout",
		Args:  Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := rolloutIDArg("report", a[0])
			if err != nil {
				return err
			}
			if good == bad {
				return Usagef("rollout report: give --good or --bad")
			}
			if req.Site == "" {
				return Usagef("rollout report: give --site SITE")
			}
			req.Good, req.Text = good, a[1]
			return e.act(cmd.Context(), id, "report", req)
		},
	}
	cmd.Flags().StringVar(&req.Site, "site", "", "the site that reports")
	cmd.Flags().BoolVar(&good, "good", false, "the release does well at the site")
	cmd.Flags().BoolVar(&bad, "bad", false, "the release does harm at the site: halt")
	return cmd
}

// rolloutEnded says whether a rollout in this state is through, and how: nil when it completed.
func rolloutEnded(r api.Rollout) (bool, error) {
	switch r.State {
	case "completed":
		return true, nil
	case "rolled_back", "aborted", "halted":
		reason := ""
		if r.Reason != "" {
			reason = ": " + r.Reason
		}
		return true, fmt.Errorf("rollout %d %s%s", r.ID, strings.ReplaceAll(r.State, "_", " "), reason)
	}
	return false, nil
}

func (e *env) rolloutStatusCmd() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status ID [--watch]",
		Short: "Show a rollout's waves and the nodes that need a look; --watch follows it until it ends",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := rolloutIDArg("status", a[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			r, err := c.Rollout(ctx, id)
			if err != nil {
				return err
			}
			if !watch {
				if e.json() {
					return e.printJSON(r)
				}
				return e.printRollout(r)
			}
			return e.watchRollout(ctx, c, r)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout live until it completes, halts, rolls back or is aborted")
	return cmd
}

func (e *env) printRollout(r api.Rollout) error {
	e.printf("rollout %d  %s  policy %s  %s", r.ID, r.Release, r.Policy, r.State)
	if r.Reason != "" {
		e.printf(" (%s)", r.Reason)
	}
	e.printf("\n")
	rows := make([][]string, 0, len(r.Waves))
	for _, w := range r.Waves {
		rows = append(rows, []string{w.Name, w.State, strconv.Itoa(w.Nodes), strconv.Itoa(w.Done), strconv.Itoa(w.Failed),
			strconv.Itoa(w.Unreachable), strconv.Itoa(w.Moving), dash(waveNote(w))})
	}
	if err := e.table([]string{"WAVE", "STATE", "NODES", "DONE", "FAILED", "UNREACHABLE", "MOVING", "NOTE"}, rows); err != nil {
		return err
	}
	if len(r.Nodes) > 0 {
		e.printf("\n")
		rows = rows[:0]
		for _, n := range r.Nodes {
			rows = append(rows, []string{n.Name, n.Site, n.Wave, n.State, dash(n.Reason)})
		}
		return e.table([]string{"NODE", "SITE", "WAVE", "STATE", "REASON"}, rows)
	}
	return nil
}

// waveNote says what a wave waits for.
func waveNote(w api.RolloutWave) string {
	var notes []string
	if w.State == "awaiting_approval" {
		notes = append(notes, fmt.Sprintf("approvals %d/%d", len(w.Approved), w.Approvals))
	}
	var waiting []string
	for _, a := range w.Acks {
		if a.Acked == nil && !a.Missed {
			waiting = append(waiting, a.Site)
		}
	}
	if len(waiting) > 0 {
		notes = append(notes, "acks from "+strings.Join(waiting, ","))
	}
	if w.State == "soaking" && w.Until != nil {
		notes = append(notes, "until "+w.Until.Format(time.RFC3339))
	}
	for _, rep := range w.Reports {
		if !rep.Good {
			notes = append(notes, "bad report from "+rep.Site)
		}
	}
	return strings.Join(notes, "; ")
}

// watchRollout follows a rollout until it ends: bars per wave on a terminal, a line per change
// otherwise (and with -o json, the rollout's JSON at each change).
func (e *env) watchRollout(ctx context.Context, c *client.Client, r api.Rollout) error {
	out, tty := e.stdout.(*os.File)
	tty = tty && isatty.IsTerminal(out.Fd()) && !e.json()
	var bars *waveBars
	if tty {
		bars = newWaveBars(out, r)
		defer bars.wait()
	}
	last := ""
	show := func(r api.Rollout) error {
		switch {
		case e.json():
			return e.printJSON(r)
		case bars != nil:
			bars.update(r)
		default:
			for _, w := range r.Waves {
				line := fmt.Sprintf("wave %s: %s, %d/%d done, %d failed, %d unreachable, %d moving", w.Name, w.State, w.Done, w.Nodes, w.Failed, w.Unreachable, w.Moving)
				if note := waveNote(w); note != "" {
					line += " (" + note + ")"
				}
				if strings.Contains(last, line+"\n") {
					continue
				}
				e.printf("%s\n", line)
			}
			e.printf("rollout %d: %s\n", r.ID, r.State)
		}
		last = summary(r)
		return nil
	}
	if err := show(r); err != nil {
		return err
	}
	if done, err := rolloutEnded(r); done {
		return err
	}
	subject := api.RolloutSubject(r.ID)
	errEnded := errors.New("ended")
	var result error
	err := c.FollowEvents(ctx, r.LastEvent, func(ev api.Event) error {
		if ev.Subject != subject {
			return nil
		}
		now, err := c.Rollout(ctx, r.ID)
		if err != nil {
			return err
		}
		if s := summary(now); s != last || e.json() {
			if err := show(now); err != nil {
				return err
			}
		}
		if done, err := rolloutEnded(now); done {
			result = err
			return errEnded
		}
		return nil
	})
	if errors.Is(err, errEnded) {
		return result
	}
	return err
}

// summary is a rollout's progress as text, to tell whether it changed.
func summary(r api.Rollout) string {
	var b strings.Builder
	for _, w := range r.Waves {
		fmt.Fprintf(&b, "wave %s: %s, %d/%d done, %d failed, %d unreachable, %d moving", w.Name, w.State, w.Done, w.Nodes, w.Failed, w.Unreachable, w.Moving)
		if note := waveNote(w); note != "" {
			b.WriteString(" (" + note + ")")
		}
		b.WriteString("\n")
	}
	b.WriteString(r.State)
	return b.String()
}

// waveBars draws one bar per wave on a terminal.
type waveBars struct {
	p    *mpb.Progress
	bars []*mpb.Bar
	mu   sync.Mutex // guards note, which the bars' renderer reads
	note []string
}

func newWaveBars(out io.Writer, r api.Rollout) *waveBars {
	wb := &waveBars{p: mpb.New(mpb.WithOutput(out), mpb.WithWidth(40)), note: make([]string, len(r.Waves))}
	for i, w := range r.Waves {
		wb.bars = append(wb.bars, wb.p.AddBar(int64(max(w.Nodes, 1)),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-10s ", w.Name))),
			mpb.AppendDecorators(decor.CountersNoUnit("%d/%d "), decor.Any(func(decor.Statistics) string {
				wb.mu.Lock()
				defer wb.mu.Unlock()
				return wb.note[i]
			}))))
	}
	wb.update(r)
	return wb
}

func (wb *waveBars) update(r api.Rollout) {
	for i, w := range r.Waves {
		if i >= len(wb.bars) {
			break
		}
		wb.mu.Lock()
		wb.note[i] = fmt.Sprintf("%s failed %d unreachable %d %s", w.State, w.Failed, w.Unreachable, waveNote(w))
		wb.mu.Unlock()
		wb.bars[i].SetCurrent(int64(w.Done + w.Failed + w.Unreachable + w.Skipped))
	}
	if done, _ := rolloutEnded(r); done {
		for _, b := range wb.bars {
			b.Abort(false)
		}
	}
}

func (wb *waveBars) wait() { wb.p.Wait() }
