package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) siteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Manage sites, the places nodes live"}
	var tier int
	var lat, lon float64
	var contact string
	add := &cobra.Command{
		Use:   "add NAME --tier 1|2|3 [--lat F --lon F] [--contact EMAIL]",
		Short: "Add a site (tier 1 runs a relay, 2 administers its own nodes, 3 lends nodes)",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if !cmd.Flags().Changed("tier") {
				return Usagef("site add: --tier is required (1, 2 or 3)")
			}
			if cmd.Flags().Changed("lat") != cmd.Flags().Changed("lon") {
				return Usagef("site add: give both --lat and --lon, or neither")
			}
			req := client.SiteAdd{Name: a[0], Tier: tier, Contact: contact}
			if cmd.Flags().Changed("lat") {
				req.Lat, req.Lon = &lat, &lon
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := c.AddSite(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(s)
			}
			e.printf("site %s added (tier %d)\n", s.Name, s.Tier)
			return nil
		},
	}
	add.Flags().IntVar(&tier, "tier", 0, "1, 2 or 3")
	add.Flags().Float64Var(&lat, "lat", 0, "latitude")
	add.Flags().Float64Var(&lon, "lon", 0, "longitude")
	add.Flags().StringVar(&contact, "contact", "", "contact e-mail")

	list := listVerb(e, "list", "List sites", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Site, error) { return c.Sites(ctx) },
		[]string{"NAME", "TIER", "LOCATION", "UP", "DOWN", "LABELS", "CONTACT"},
		func(s api.Site) []string {
			return []string{s.Name, strconv.Itoa(s.Tier), location(s), strconv.Itoa(s.Nodes[api.StatusUp]), strconv.Itoa(s.Nodes[api.StatusDown]),
				dash(labels.Set(s.Labels).String()), dash(s.Contact)}
		})
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one site",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := c.Site(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(s)
			}
			return e.table([]string{"FIELD", "VALUE"}, [][]string{
				{"name", s.Name}, {"tier", strconv.Itoa(s.Tier)}, {"location", location(s)}, {"contact", dash(s.Contact)},
				{"labels", dash(labels.Set(s.Labels).String())}, {"nodes up", strconv.Itoa(s.Nodes[api.StatusUp])}, {"nodes down", strconv.Itoa(s.Nodes[api.StatusDown])},
				{"created", s.CreatedAt.Format(time.RFC3339)},
			})
		},
	}
	label := &cobra.Command{
		Use:   "label NAME key=value ... key- ...",
		Short: "Set (k=v) or remove (k-) a site's labels, which selectors see on each of its nodes",
		Long: "Set (k=v) or remove (k-) a site's labels. A selector sees them on every node of the site,\n" +
			"under the node's own labels (a node's own label of the same key wins) and its implicit\n" +
			"site and tier, which cannot be set. It changes which nodes selectors match; it redeploys nothing.",
		Args: Args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			change, err := parseLabelArgs("site label", a[1:])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			s, err := c.LabelSite(cmd.Context(), a[0], change)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(s)
			}
			if len(s.Labels) == 0 {
				e.printf("site %s now has no labels\n", s.Name)
				return nil
			}
			e.printf("site %s now labelled %s\n", s.Name, labels.Set(s.Labels).String())
			return nil
		},
	}
	var force bool
	rm := &cobra.Command{
		Use:   "rm NAME [--force]",
		Short: "Remove a site; refused while it has nodes unless --force revokes them",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RemoveSite(cmd.Context(), a[0], force); err != nil {
				return err
			}
			e.printf("site %s removed\n", a[0])
			return nil
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "also revoke and remove the site's nodes")
	cmd.AddCommand(add, list, show, label, rm)
	return cmd
}

func location(s api.Site) string {
	if s.Lat == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f,%.4f", *s.Lat, *s.Lon)
}

func (e *env) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Make and revoke enrollment and operator tokens"}
	var req api.TokenCreate
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --site NAME [--uses N] [--ttl D] | --role admin|viewer [--ttl D]",
		Short: "Make a token and print it alone on stdout",
		Long: "With --site, a one-off enrollment token for agents joining that site (default: 1 use, valid 24h).\n" +
			"With --role, an operator API token (admin may change things, viewer only reads).",
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (req.Site == "") == (req.Role == "") {
				return Usagef("token create: give --site NAME for an enrollment token or --role admin|viewer for an operator token")
			}
			if cmd.Flags().Changed("ttl") {
				if ttl <= 0 {
					return Usagef("token create: --ttl must be positive")
				}
				req.TTL = ttl.String()
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(t)
			}
			e.printf("%s\n", t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&req.Site, "site", "", "site the enrolling nodes join")
	create.Flags().StringVar(&req.Role, "role", "", "operator role: admin or viewer")
	create.Flags().IntVar(&req.Uses, "uses", 0, "how many nodes may enroll with it (default 1)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default 24h for enrollment, none for operator tokens)")
	create.Flags().StringVar(&req.Description, "description", "", "free text shown by token list")
	list := listVerb(e, "list", "List tokens (never their secrets)", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Token, error) { return c.Tokens(ctx) },
		[]string{"ID", "KIND", "SITE", "ROLE", "USES LEFT", "EXPIRES", "DESCRIPTION"},
		func(t api.Token) []string {
			uses, exp := "-", "never"
			if t.UsesLeft != nil {
				uses = strconv.Itoa(*t.UsesLeft)
			}
			if t.ExpiresAt != nil {
				exp = t.ExpiresAt.Format(time.RFC3339)
			}
			return []string{t.ID, t.Kind, dash(t.Site), dash(t.Role), uses, exp, dash(t.Description)}
		})
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), a[0]); err != nil {
				return err
			}
			e.printf("token %s revoked\n", a[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (e *env) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "List, inspect, label and revoke nodes"}
	var q client.NodeQuery
	list := listVerb(e, "list [--site S] [--selector SEL] [--status up|down|revoked]", "List nodes (revoked ones only with --status revoked)", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Node, error) {
			if _, err := labels.ParseSelector(q.Selector); err != nil {
				return nil, UsageError{err}
			}
			return c.Nodes(ctx, q)
		},
		[]string{"NAME", "SITE", "STATUS", "LABELS", "APPS", "PLATFORM", "AGENT", "LAST SEEN"},
		func(n api.Node) []string {
			return []string{n.Name, n.Site, n.Status, dash(labels.Set(n.Labels).String()), dash(appSummary(n)),
				dash(n.Facts.OS + "/" + n.Facts.Arch), dash(n.Facts.AgentVersion), ago(n.LastSeen)}
		})
	list.Flags().StringVar(&q.Site, "site", "", "only nodes of this site")
	list.Flags().StringVarP(&q.Selector, "selector", "l", "", "label selector, e.g. site=ams,role!=mesh")
	list.Flags().StringVar(&q.Status, "status", "", "up, down or revoked")
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one node with its facts",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			n, err := c.Node(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(n)
			}
			f := n.Facts
			rows := [][]string{
				{"name", n.Name}, {"site", fmt.Sprintf("%s (tier %d)", n.Site, n.Tier)}, {"status", n.Status},
				{"labels", dash(labels.Set(n.Labels).String())}, {"site labels", dash(labels.Set(n.SiteLabels).String())}, {"generation", strconv.FormatInt(n.Generation, 10)},
				{"hostname", dash(f.Hostname)}, {"platform", f.OS + "/" + f.Arch}, {"cpus", strconv.Itoa(f.CPUs)},
				{"memory", bytes(f.MemoryBytes)}, {"disk", fmt.Sprintf("%s (%s free)", bytes(f.DiskBytes), bytes(f.DiskFree))},
				{"agent", fmt.Sprintf("%s (protocol %d)", dash(f.AgentVersion), f.Protocol)},
				{"last seen", ago(n.LastSeen)}, {"enrolled", n.EnrolledAt.Format(time.RFC3339)},
			}
			if err := e.table([]string{"FIELD", "VALUE"}, append(rows, appRows(n)...)); err != nil {
				return err
			}
			e.printLogTails(n)
			return nil
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Revoke a node's identity at once; it must enroll again to return",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RemoveNode(cmd.Context(), a[0]); err != nil {
				return err
			}
			e.printf("node %s revoked\n", a[0])
			return nil
		},
	}
	var sel string
	var all bool
	label := &cobra.Command{
		Use:   "label [NAME | --selector SEL | --all] key=value ... key- ...",
		Short: "Set (k=v) or remove (k-) labels; the change is pushed to the agents at once",
		Args:  Args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			node := ""
			if sel == "" && !all {
				node, a = a[0], a[1:]
			} else if sel != "" && all {
				return Usagef("node label: give --selector or --all, not both")
			}
			if all {
				sel = labels.KeySite // every node has a site
			}
			change, err := parseLabelArgs("node label", a)
			if err != nil {
				return err
			}
			change.Selector = sel
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.Label(cmd.Context(), node, change)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(res)
			}
			e.printf("%d node(s) relabelled\n", len(res.Nodes))
			return nil
		},
	}
	label.Flags().StringVarP(&sel, "selector", "l", "", "label every node this selector matches")
	label.Flags().BoolVar(&all, "all", false, "label every node")
	cmd.AddCommand(list, show, rm, label)
	return cmd
}

// parseLabelArgs reads kubectl-style label arguments of verb (node label, site label): k=v
// sets, k- removes.
func parseLabelArgs(verb string, a []string) (api.LabelChange, error) {
	var c api.LabelChange
	var sets []string
	for _, s := range a {
		if k, ok := strings.CutSuffix(s, "-"); ok && !strings.Contains(s, "=") {
			if err := labels.CheckName("label key", k); err != nil {
				return c, UsageError{err}
			}
			c.Remove = append(c.Remove, k)
			continue
		}
		sets = append(sets, s)
	}
	set, err := labels.ParseSet(sets...)
	if err != nil {
		return c, UsageError{err}
	}
	if len(set) == 0 && len(c.Remove) == 0 {
		return c, Usagef("%s: give key=value to set or key- to remove", verb)
	}
	c.Set = set
	sort.Strings(c.Remove)
	return c, nil
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	d := time.Since(*t)
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}

func bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// appRows describes each app of a node: the release installed, the one assigned when it differs,
// and why that one is not installed.
func appRows(n api.Node) [][]string {
	var rows [][]string
	seen := map[string]bool{}
	for _, a := range n.Apps {
		seen[a.App] = true
		v := dash(a.Version)
		if a.State != "" {
			v += " " + a.State
		}
		if a.Pending != "" {
			v += " (assigned " + a.Pending + ")"
		}
		if a.Error != "" {
			v += ": " + a.Error
		}
		rows = append(rows, []string{"app " + a.App, v})
		for _, p := range a.Processes {
			rows = append(rows, []string{"  process " + p.Name, processLine(p)})
		}
		if len(a.Ports) > 0 {
			names := slices.Sorted(maps.Keys(a.Ports))
			ports := make([]string, len(names))
			for i, name := range names {
				ports[i] = fmt.Sprintf("%s=%d", name, a.Ports[name])
			}
			rows = append(rows, []string{"  ports", strings.Join(ports, " ")})
		}
	}
	for _, a := range n.Assigned {
		if !seen[a.App] {
			rows = append(rows, []string{"app " + a.App, "- (assigned " + a.Version + ", not reported yet)"})
		}
	}
	return rows
}

// processLine describes a supervised process in one cell: state, pid, restarts, last exit.
func processLine(p api.ProcessState) string {
	parts := []string{p.State}
	if p.PID > 0 {
		parts = append(parts, fmt.Sprintf("pid %d", p.PID))
	}
	if p.Started != nil {
		parts = append(parts, "up since "+p.Started.Format(time.RFC3339))
	}
	parts = append(parts, fmt.Sprintf("%d restarts", p.Restarts))
	if x := p.LastExit; x != nil {
		how := "exit status unknown (adopted)"
		switch {
		case x.Signal != "":
			how = "killed by " + x.Signal
		case x.Code != nil:
			how = fmt.Sprintf("exited %d", *x.Code)
		}
		parts = append(parts, "last "+how+" at "+x.Time.Format(time.RFC3339))
	}
	return strings.Join(parts, ", ")
}

// printLogTails prints the log tail an app reported with its failure, line by line, after the
// node's table.
func (e *env) printLogTails(n api.Node) {
	for _, a := range n.Apps {
		if a.LogTail == "" {
			continue
		}
		e.printf("\nlog tail of %s (the failing process):\n", a.App)
		for _, line := range strings.Split(strings.TrimRight(a.LogTail, "\n"), "\n") {
			e.printf("  %s\n", line)
		}
	}
}

// appSummary is a node's apps in one cell: hello@1.4.0, with "(withdrawn)" when it runs its
// assigned release and that was withdrawn, "→1.5.0!" when an assigned release failed to install
// and "→1.5.0" while one is pending.
func appSummary(n api.Node) string {
	withdrawn := map[string]bool{}
	for _, a := range n.Assigned {
		if a.Withdrawn != "" {
			withdrawn[a.App+"@"+a.Version] = true
		}
	}
	parts := make([]string, 0, len(n.Apps))
	for _, a := range n.Apps {
		p := a.App + "@" + dash(a.Version)
		if withdrawn[p] {
			p += "(withdrawn)"
		}
		if a.Pending != "" {
			p += "→" + a.Pending
			if a.Error != "" {
				p += "!"
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}
