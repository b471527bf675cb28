package cli

import (
	"context"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

// rolloutCmd is `ferry rollout`: moving nodes to a release in waves. Its verbs (plan, start,
// status, …) sit beside `policy`, the policies rollouts follow.
func (e *env) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Move nodes to a release in waves, with gates, approvals, acknowledgements and rollback"}
	cmd.AddCommand(e.policyCmd())
	cmd.AddCommand(e.rolloutVerbs()...)
	return cmd
}

func (e *env) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The policies rollouts follow: the built-in one per release class, to use or copy and edit",
	}
	list := listVerb(e, "list", "List the rollout policies, with each one's waves in one line", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Policy, error) { return c.Policies(ctx) },
		[]string{"NAME", "WAVES", "SUMMARY"},
		func(p api.Policy) []string { return []string{p.Name, strconv.Itoa(p.Waves), p.Summary} })
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Print a policy's YAML, to copy into a file, edit and give to --policy (-o json: the policy as parsed)",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			p, err := c.Policy(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(p.Parsed)
			}
			// Line by line through safe: the text is the server's, and its newlines are meant.
			for _, line := range strings.SplitAfter(strings.TrimSuffix(p.YAML, "\n"), "\n") {
				e.printf("%s\n", strings.TrimSuffix(line, "\n"))
			}
			return nil
		},
	}
	cmd.AddCommand(list, show)
	return cmd
}
