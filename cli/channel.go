package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

// splitRelease parses APP@VERSION.
func splitRelease(verb, s string) (string, string, error) {
	app, ver, ok := strings.Cut(s, "@")
	if !ok || app == "" || ver == "" {
		return "", "", Usagef("%s: want APP@VERSION, got %q", verb, s)
	}
	return app, ver, nil
}

func (e *env) channelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "The promotion path releases move along (default unstable → preview → production)"}
	var req api.ChannelCreate
	create := &cobra.Command{
		Use:   "create NAME --after CHANNEL [--allow-unsigned]",
		Short: "Add a channel to the path, after an existing one",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if req.After == "" {
				return Usagef("channel create: --after CHANNEL is required")
			}
			req.Name = a[0]
			c, err := e.client()
			if err != nil {
				return err
			}
			ch, err := c.CreateChannel(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(ch)
			}
			e.printf("channel %s created after %s\n", ch.Name, req.After)
			return nil
		},
	}
	create.Flags().StringVar(&req.After, "after", "", "the channel the new one follows")
	create.Flags().BoolVar(&req.AllowUnsigned, "allow-unsigned", false, "accept unsigned releases (only useful as the first channel of a test path)")
	var allow bool
	set := &cobra.Command{
		Use:   "set NAME --allow-unsigned=true|false",
		Short: "Change a channel's settings: whether it accepts unsigned releases",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if !cmd.Flags().Changed("allow-unsigned") {
				return Usagef("channel set: nothing to change; give --allow-unsigned=true or --allow-unsigned=false")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ch, err := c.SetChannel(cmd.Context(), a[0], api.ChannelSet{AllowUnsigned: &allow})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(ch)
			}
			e.printf("channel %s: allow_unsigned=%t\n", ch.Name, ch.AllowUnsigned)
			return nil
		},
	}
	set.Flags().BoolVar(&allow, "allow-unsigned", false, "accept unsigned releases (true) or not (false)")
	list := listVerb(e, "list", "List channels in promotion order with each app's candidate", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Channel, error) { return c.Channels(ctx) },
		[]string{"#", "CHANNEL", "UNSIGNED OK", "CANDIDATES"},
		func(ch api.Channel) []string {
			return []string{strconv.Itoa(ch.Position), ch.Name, strconv.FormatBool(ch.AllowUnsigned), dash(candidates(ch.Candidates))}
		})
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a channel's releases, candidates and history",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ch, err := c.Channel(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(ch)
			}
			e.printf("channel %s (position %d)\ncandidates: %s\nreleases:   %s\n\n", ch.Name, ch.Position, dash(candidates(ch.Candidates)), dash(strings.Join(ch.Releases, " ")))
			rows := [][]string{}
			for _, h := range ch.History {
				rows = append(rows, []string{h.Time.Local().Format(time.RFC3339), h.Action, h.Release, dash(h.Reason)})
			}
			return e.table([]string{"TIME", "ACTION", "RELEASE", "REASON"}, rows)
		},
	}
	cmd.AddCommand(create, set, list, show)
	return cmd
}

// candidates is a channel's candidates, app@version, by app.
func candidates(m map[string]string) string {
	return joinAt(m, func(a, b string) bool { return a < b })
}

// joinAt is "key@value ..." with the keys in the order less gives.
func joinAt(m map[string]string, less func(a, b string) bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "@" + m[k]
	}
	return strings.Join(parts, " ")
}

func (e *env) releaseLifecycleCmds() []*cobra.Command {
	var to string
	var force bool
	promote := &cobra.Command{
		Use:   "promote APP@VERSION --to CHANNEL [--force]",
		Short: "Move a release one step along the channel path (--force skips steps, and is recorded)",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app, ver, err := splitRelease("release promote", a[0])
			if err != nil {
				return err
			}
			if to == "" {
				return Usagef("release promote: --to CHANNEL is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rel, err := c.Promote(cmd.Context(), app, ver, api.Promote{To: to, Force: force})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rel)
			}
			e.printf("%s@%s is in %s\n", rel.App, rel.Version, strings.Join(rel.Channels, ", "))
			return nil
		},
	}
	promote.Flags().StringVar(&to, "to", "", "target channel")
	promote.Flags().BoolVar(&force, "force", false, "skip channels in between")
	var reason string
	withdraw := &cobra.Command{
		Use:   "withdraw APP@VERSION --reason TEXT",
		Short: "Take a release out of every channel at once; each falls back to its next candidate",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app, ver, err := splitRelease("release withdraw", a[0])
			if err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return Usagef("release withdraw: --reason TEXT is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rel, err := c.Withdraw(cmd.Context(), app, ver, reason)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rel)
			}
			e.printf("%s@%s withdrawn: %s\n", rel.App, rel.Version, rel.Withdrawn)
			return nil
		},
	}
	withdraw.Flags().StringVar(&reason, "reason", "", "why it must not be installed")
	var epoch uint32
	republish := &cobra.Command{
		Use:   "republish APP@OLDVERSION --epoch N",
		Short: "Downgrade by upgrading: publish old content again as N:VERSION, above every lower epoch",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app, ver, err := splitRelease("release republish", a[0])
			if err != nil {
				return err
			}
			if epoch == 0 {
				return Usagef("release republish: --epoch N (1 or more) is required")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rel, err := c.Republish(cmd.Context(), app, ver, epoch)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rel)
			}
			e.printf("%s@%s published with the content of %s (sha256:%s) in %s\n", rel.App, rel.Version, ver, rel.SHA256, strings.Join(rel.Channels, ", "))
			return nil
		},
	}
	republish.Flags().Uint32Var(&epoch, "epoch", 0, "the new epoch, greater than the old one")
	return []*cobra.Command{promote, withdraw, republish}
}

func (e *env) bulletinCmd() *cobra.Command {
	var runs string
	cmd := &cobra.Command{
		Use:   "bulletin [APP] [--runs APP@VERSION]",
		Short: "The release bulletin: each channel's candidate, and which versions run at which sites",
		Args:  Args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app := ""
			if len(a) == 1 {
				app = a[0]
			}
			if runs != "" {
				if _, _, err := splitRelease("bulletin --runs", runs); err != nil {
					return err
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			b, err := c.Bulletin(cmd.Context(), app, runs)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(b)
			}
			if runs != "" {
				e.printf("sites running %s: %s\n", runs, dash(strings.Join(b.RunsSites, " ")))
				return nil
			}
			rows := [][]string{}
			for _, ba := range b.Apps {
				running := []string{}
				for site, versions := range ba.Sites {
					for v, n := range versions {
						mark := ""
						if _, ok := ba.Withdrawn[v]; ok {
							mark = " (withdrawn)"
						}
						running = append(running, fmt.Sprintf("%s:%s×%d%s", site, v, n, mark))
					}
				}
				sort.Strings(running)
				offered := make([]string, len(ba.Candidates))
				for i, cc := range ba.Candidates {
					offered[i] = cc.Channel + "@" + cc.Version
				}
				rows = append(rows, []string{ba.App, dash(strings.Join(offered, " ")), dash(strings.Join(running, " "))})
			}
			return e.table([]string{"APP", "CHANNEL CANDIDATES", "RUNNING (SITE:VERSION×NODES)"}, rows)
		},
	}
	cmd.Flags().StringVar(&runs, "runs", "", "list the sites that run APP@VERSION")
	return cmd
}
