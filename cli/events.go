package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/spf13/cobra"
)

// eventPage is how many events one request reads from the log.
const eventPage = 1000

func (e *env) eventsCmd() *cobra.Command {
	var since int64
	var follow bool
	var limit int
	var types []string
	var node, site string
	cmd := &cobra.Command{
		Use:   "events [--limit N] [--since ID] [--type T] [--node N] [--site S] [--follow]",
		Short: "Read the event log; --follow streams new events and survives server restarts",
		Long: "Read the event log, oldest first: by default the newest 50 events; with --since ID the first ones\n" +
			"after that ID, so that a script can go on from the last ID it saw. --type, --node and --site keep\n" +
			"only the events of a type (a glob such as 'app.*'; repeatable), about a node, or about a site and\n" +
			"its nodes. --follow then streams every new event that passes the filters.",
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return Usagef("events: --since must be 0 or more")
			}
			if limit < 0 {
				return Usagef("events: --limit must be 0 (no limit) or more")
			}
			for _, t := range types {
				if _, err := path.Match(t, ""); err != nil || t == "" {
					return Usagef("events: invalid --type %q: want a type such as app.installed, or a glob such as 'app.*'", t)
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			f, err := newEventFilter(cmd.Context(), c, types, node, site)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var evs []api.Event
			var last int64 // the newest event read, matching or not
			switch {
			case cmd.Flags().Changed("since") && follow:
				last = since // all that follows, without a limit
			case cmd.Flags().Changed("since"):
				evs, last, err = forwardEvents(ctx, c, since, limit, eventPage, f.match)
			default:
				evs, last, err = newestEvents(ctx, c, limit, eventPage, f.match)
			}
			if err != nil {
				return err
			}
			if !follow {
				if e.json() {
					if evs == nil {
						evs = []api.Event{}
					}
					return e.printJSON(evs)
				}
				rows := make([][]string, len(evs))
				for i, ev := range evs {
					rows[i] = eventRow(ev)
				}
				return e.table(eventHeader, rows)
			}
			print := e.eventStreamer()
			for _, ev := range evs {
				if err := print(ev); err != nil {
					return err
				}
			}
			err = c.FollowEvents(ctx, last, func(ev api.Event) error {
				f.learn(ev)
				if !f.match(ev) {
					return nil
				}
				return print(ev)
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().Int64Var(&since, "since", 0, "the events after this ID, oldest first (default: the newest)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep streaming new events")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many events, 0 for all (--follow streams all new events after them)")
	cmd.Flags().StringSliceVar(&types, "type", nil, "only events of this type or glob, e.g. node.down or 'app.*' (repeatable)")
	cmd.Flags().StringVar(&node, "node", "", "only events about this node")
	cmd.Flags().StringVar(&site, "site", "", "only events about this site and its nodes")
	return cmd
}

// eventStreamer prints events one at a time as they come: JSON objects, or rows that cannot be
// aligned with rows yet to come, so tab-separated, each cell through safe as in a table.
func (e *env) eventStreamer() func(api.Event) error {
	header := true
	line := func(cells []string) error {
		clean := make([]string, len(cells))
		for i, c := range cells {
			clean[i] = safe(c)
		}
		_, err := fmt.Fprintln(e.stdout, strings.Join(clean, "\t"))
		return err
	}
	return func(ev api.Event) error {
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
}

var eventHeader = []string{"ID", "TIME", "TYPE", "SUBJECT", "ACTOR", "SOURCE", "DATA"}

func eventRow(ev api.Event) []string {
	return []string{strconv.FormatInt(ev.ID, 10), ev.Time.Local().Format(time.RFC3339), ev.Type, ev.Subject,
		actorText(ev), dash(ev.Source), dataText(ev.Fields())}
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
