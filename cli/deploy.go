package cli

import (
	"fmt"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) deployCmd() *cobra.Command {
	var sel string
	var all bool
	cmd := &cobra.Command{
		Use:   "deploy APP@VER --selector SEL | --all",
		Short: "Assign a release to nodes at once (direct: no waves); their agents verify and install it",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if _, _, err := splitRelease("deploy", a[0]); err != nil {
				return err
			}
			switch {
			case sel != "" && all:
				return usagef("deploy: give --selector or --all, not both")
			case all:
				sel = labels.KeySite // every node has a site
			case sel == "":
				return usagef("deploy: give --selector SEL (e.g. site=ams) or --all")
			}
			if _, err := labels.ParseSelector(sel); err != nil {
				return UsageError{err}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.Deploy(cmd.Context(), api.Deploy{Release: a[0], Selector: sel})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(res)
			}
			fmt.Fprintf(e.stdout, "%s assigned to %d node(s); follow with: ferry events --follow\n", res.Release, len(res.Nodes))
			return nil
		},
	}
	cmd.Flags().StringVarP(&sel, "selector", "l", "", "deploy to every node this selector matches")
	cmd.Flags().BoolVar(&all, "all", false, "deploy to every node")
	return cmd
}
