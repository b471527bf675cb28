package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
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
		Args:  NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return Usagef("events: --since must be 0 or more")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if follow {
				// Streamed rows cannot be aligned with rows yet to come: they are tab-separated,
				// each cell through safe as in a table.
				header := true
				line := func(cells []string) error {
					clean := make([]string, len(cells))
					for i, c := range cells {
						clean[i] = safe(c)
					}
					_, err := fmt.Fprintln(e.stdout, strings.Join(clean, "\t"))
					return err
				}
				print := func(ev api.Event) error {
					if e.json() {
						return e.printJSON(ev)
					}
					if header {
						header = false
						if err := line(eventHeader); err != nil {
							return err
						}
					}
					return line(eventRow(ev))
				}
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
			rows := make([][]string, len(evs))
			for i, ev := range evs {
				rows[i] = eventRow(ev)
			}
			return e.table(eventHeader, rows)
		},
	}
	cmd.Flags().Int64Var(&since, "since", 0, "only events after this id")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new events")
	cmd.Flags().IntVar(&limit, "limit", 1000, "at most this many events (without --follow)")
	return cmd
}

var eventHeader = []string{"ID", "TIME", "TYPE", "SUBJECT", "ACTOR", "SOURCE", "DATA"}

func eventRow(ev api.Event) []string {
	return []string{strconv.FormatInt(ev.ID, 10), ev.Time.Local().Format(time.RFC3339), ev.Type, ev.Subject,
		actorText(ev), dash(ev.Source), dataText(ev.Data)}
}

// actorText shows who caused an event: "token:abc (admin)", "node:ams-01" or "system"; "-" when
// the server did not say (an older server).
func actorText(ev api.Event) string {
	switch {
	case ev.Actor == "":
		return "-"
	case ev.Role != "":
		return ev.Actor + " (" + ev.Role + ")"
	}
	return ev.Actor
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
	return s[1:]
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
