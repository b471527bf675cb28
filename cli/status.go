package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/spf13/cobra"
)

func (e *env) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the fleet at a glance: sites up and down with their health, failing checks, open alerts, rollouts",
		Args:  NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(st)
			}
			return e.printStatus(st)
		},
	}
}

func (e *env) printStatus(st api.Status) error {
	up, down := 0, 0
	rows := make([][]string, 0, len(st.Sites))
	for _, s := range st.Sites {
		up, down = up+s.Up, down+s.Down
		rows = append(rows, []string{s.Name, s.Health, strconv.Itoa(s.Up), strconv.Itoa(s.Down)})
	}
	e.printf("%d sites, %d nodes up, %d down; %d failing checks; %d alerts not acknowledged; %d open rollouts\n\n",
		len(st.Sites), up, down, len(st.Checks), st.Alerts, len(st.Rollouts))
	if err := e.table([]string{"SITE", "HEALTH", "UP", "DOWN"}, rows); err != nil {
		return err
	}
	if len(st.Checks) > 0 {
		e.printf("\n")
		rows = rows[:0]
		for _, c := range st.Checks {
			rows = append(rows, []string{c.Node, c.Site, c.Check, c.State, c.Time.Format(time.RFC3339), dash(c.Output)})
		}
		if err := e.table([]string{"NODE", "SITE", "CHECK", "STATE", "CHECKED", "OUTPUT"}, rows); err != nil {
			return err
		}
	}
	if len(st.Rollouts) > 0 {
		e.printf("\n")
		rows = rows[:0]
		for _, r := range st.Rollouts {
			waves := make([]string, 0, len(r.Waves))
			for _, w := range r.Waves {
				waves = append(waves, fmt.Sprintf("%s %s %d/%d", w.Name, w.State, w.Done, w.Nodes))
			}
			rows = append(rows, []string{strconv.FormatInt(r.ID, 10), r.Release, r.State, progressOf(r), strings.Join(waves, ", ")})
		}
		return e.table([]string{"ROLLOUT", "RELEASE", "STATE", "PROGRESS", "WAVES"}, rows)
	}
	return nil
}
