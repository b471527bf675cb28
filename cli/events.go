package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/spf13/cobra"
)

func (e *env) eventsCmd() *cobra.Command {
	var since int64
	var follow bool
	var limit int
	cmd := &cobra.Command{
		Use:   "events [--since ID] [--follow]",
		Short: "Read the event log; --follow streams new events and survives server restarts",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return usagef("events: --since must be 0 or more")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			print := func(ev api.Event) error {
				if e.json() {
					return e.printJSON(ev)
				}
				_, err := fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%s%s\n", ev.ID, ev.Time.Local().Format(time.RFC3339), ev.Type, ev.Subject, dataText(ev.Data))
				return err
			}
			if follow {
				err := c.FollowEvents(cmd.Context(), since, print)
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			evs, err := c.Events(cmd.Context(), since, limit)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(evs)
			}
			for _, ev := range evs {
				if err := print(ev); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&since, "since", 0, "only events after this id")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new events")
	cmd.Flags().IntVar(&limit, "limit", 1000, "at most this many events (without --follow)")
	return cmd
}

func dataText(d map[string]any) string {
	if len(d) == 0 {
		return ""
	}
	s := ""
	for _, k := range sortedKeys(d) {
		v, _ := json.Marshal(d[k])
		s += " " + k + "=" + strings.Trim(string(v), `"`)
	}
	return "\t" + s[1:]
}
