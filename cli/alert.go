package cli

import (
	"context"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

func (e *env) alertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alert", Short: "Alerts raised by checks' hard state changes"}
	var all bool
	list := listVerb(e, "list [--all]", "List open alerts (with --all, cleared ones too)", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Alert, error) {
			return c.Alerts(ctx, all)
		},
		[]string{"ID", "NODE", "CHECK", "STATE", "SINCE", "ACKED BY", "OUTPUT"},
		func(a api.Alert) []string {
			state := a.State
			if a.ClearedAt != nil {
				state = "cleared"
			}
			return []string{strconv.FormatInt(a.ID, 10), a.Node, a.Check, state, a.Since.Format(time.RFC3339), a.AckedBy, a.Output}
		})
	list.Flags().BoolVar(&all, "all", false, "include cleared alerts")
	var comment string
	ack := &cobra.Command{
		Use:   "ack ID [--comment TEXT]",
		Short: "Acknowledge an alert: a known problem, which notifies no further until it clears",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, err := strconv.ParseInt(a[0], 10, 64)
			if err != nil || id <= 0 {
				return Usagef("alert ack: %q is no alert id; see ferry alert list", a[0])
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			acked, err := c.AckAlert(cmd.Context(), id, comment)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(acked)
			}
			e.printf("alert %d (%s on %s) acknowledged\n", acked.ID, acked.Check, acked.Node)
			return nil
		},
	}
	ack.Flags().StringVar(&comment, "comment", "", "why, for whoever looks next")
	cmd.AddCommand(list, ack)
	return cmd
}
