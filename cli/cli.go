// Package cli is the ferry command line: the operator verbs behind one Run function, which
// also runs the verbs defined elsewhere (the daemons cmd/ferry adds) under the same root. The
// operator verbs reach the server only through the client package.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// DefaultAddr is where the CLI finds the server when FERRY_ADDR is not set.
const DefaultAddr = "https://127.0.0.1:7700"

// UsageError is a mistake in how ferry was called; it exits with status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError from a format.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// Message is the one line to print for Run's error, with any control characters a server put
// in it made visible.
func Message(err error) string { return "ferry: " + safe(err.Error()) }

// ExitCode maps Run's error to the process exit status: 0 ok, 1 failure, 2 usage.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(UsageError)):
		return 2
	default:
		return 1
	}
}

// outputIsFile marks a command whose -o names a file rather than the output format.
const outputIsFile = "output-is-file"

// env carries what every command needs; nothing is global.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	addr       string
	token      string
	tokenFile  string
	output     string
	caCert     string
	clientCert string
	clientKey  string
}

// Globals is what the root command holds for every verb: the output streams and the flags
// every verb takes, with their environment defaults. Verbs defined outside this package (the
// daemons cmd/ferry adds) read them through it.
type Globals struct {
	e     *env
	flags *pflag.FlagSet // the root's persistent flags: the operator's
}

// Stdout is where a verb prints its results.
func (g Globals) Stdout() io.Writer { return g.e.stdout }

// Stderr is where a verb logs.
func (g Globals) Stderr() io.Writer { return g.e.stderr }

// ServerAddr is --server, else $FERRY_ADDR, else DefaultAddr.
func (g Globals) ServerAddr() string { return g.e.serverAddr() }

// FlagToken is the token given by --token or --token-file; "" when neither is given
// ($FERRY_TOKEN is not read: it holds an operator token).
func (g Globals) FlagToken() (string, error) { return g.e.flagToken() }

// TLSOptions are --ca-cert, --client-cert and --client-key, else their environment variables.
func (g Globals) TLSOptions() pki.ClientOptions { return g.e.tlsOptions() }

// Getenv reads the environment ferry runs in, for the defaults of a verb's own flags.
func (g Globals) Getenv(key string) string { return g.e.getenv(key) }

// DaemonFlags fits the operator's flags to a daemon's command. Those named in own, which the
// daemon reads through Globals, become flags of its own, described by own's text (or the
// operator's when it is empty). The others mean nothing to a daemon: they leave its help and
// are refused when given, rather than ignored.
func (g Globals) DaemonFlags(cmd *cobra.Command, own map[string]string) {
	var refused []string
	g.flags.VisitAll(func(f *pflag.Flag) {
		mine := &pflag.Flag{Name: f.Name, Shorthand: f.Shorthand, Usage: own[f.Name], Value: f.Value, DefValue: f.DefValue}
		if _, ok := own[f.Name]; !ok {
			mine.Value, mine.Hidden = new(ignored), true
			refused = append(refused, f.Name)
		} else if mine.Usage == "" {
			mine.Usage = f.Usage
		}
		cmd.Flags().AddFlag(mine)
	})
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		for _, name := range refused {
			if cmd.Flags().Changed(name) {
				return Usagef("%s: --%s is a flag of the operator's verbs; %s does not take it", verbName(cmd), name, cmd.CommandPath())
			}
		}
		return nil
	}
}

// ignored is the value of an operator flag a daemon refuses: it takes an argument, as the
// operator's flag does, so that the refusal names the flag rather than a stray argument.
type ignored string

func (v *ignored) Set(s string) error { *v = ignored(s); return nil }
func (v *ignored) String() string     { return string(*v) }
func (v *ignored) Type() string       { return "string" }

// Verb makes a command that runs under the root beside the operator verbs.
type Verb func(Globals) *cobra.Command

// Run executes ferry with args (without the program name), printing to stdout and stderr; verbs
// are added to the operator verbs. It prints nothing for errors: the caller prints the one line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, verbs ...Verb) error {
	return run(ctx, args, stdout, stderr, os.Getenv, verbs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, verbs ...Verb) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	ran := false
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Ferry carries software to fleets of machines over many sites, in safe stages",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			ran = true
			if cmd.Annotations[outputIsFile] == "true" {
				return nil
			}
			if e.output != "table" && e.output != "json" {
				return Usagef("invalid --output %q: want table or json", e.output)
			}
			return nil
		},
		// Set, so that cobra leaves unknown commands to unknownCommands, as for every group.
		Args: cobra.ArbitraryArgs,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.addr, "server", "", "server address, or several comma-separated, one per replica (default $FERRY_ADDR or "+DefaultAddr+")")
	pf.StringVar(&e.token, "token", "", "API token (default $FERRY_TOKEN)")
	pf.StringVar(&e.tokenFile, "token-file", "", "file holding the API token")
	pf.StringVarP(&e.output, "output", "o", "table", "output format of list and show verbs: table or json")
	pf.StringVar(&e.caCert, "ca-cert", "", "CA file that verifies the server (default $FERRY_CACERT, else the system's roots)")
	pf.StringVar(&e.clientCert, "client-cert", "", "client certificate for servers that require one (default $FERRY_CLIENT_CERT)")
	pf.StringVar(&e.clientKey, "client-key", "", "key of --client-cert (default $FERRY_CLIENT_KEY)")

	for _, v := range verbs {
		root.AddCommand(v(Globals{e, pf}))
	}
	root.AddCommand(
		e.siteCmd(), e.tokenCmd(), e.releaseCmd(), e.keyCmd(), e.channelCmd(), e.bulletinCmd(), e.deployCmd(), e.undeployCmd(), e.appCmd(), e.rolloutCmd(), e.nodeCmd(), e.logsCmd(), e.eventsCmd(), e.webhookCmd(), e.probeCmd(), e.checkCmd(), e.alertCmd(), e.versionCmd(),
		e.statusCmd(),
	)
	unknown := unknownCommands(root)
	_, err := root.ExecuteContextC(ctx)
	if err == nil {
		err = *unknown
	}
	if err != nil && !ran && !errors.As(err, new(UsageError)) {
		// Cobra's own complaints (unknown flag, wrong argument count) are usage errors.
		return UsageError{err}
	}
	return err
}

// unknownCommands makes a group (a command that only holds others: ferry, ferry node) called
// with a word that names none of its commands fail with a usage error, where cobra would print
// the group's help and succeed. The error is left where the returned pointer points.
func unknownCommands(root *cobra.Command) *error {
	var unknown error
	help := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, a []string) {
		// A group's flags are parsed only when it was called itself, not through ferry help.
		rest := cmd.Flags().Args()
		if cmd.Runnable() || len(rest) == 0 || cmd.Flags().Changed("help") {
			help(cmd, a)
			return
		}
		msg := fmt.Sprintf("unknown command %q for %q", rest[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(rest[0]); len(s) > 0 {
			if len(s) > 1 {
				s = []string{strings.Join(s[:len(s)-1], ", "), s[len(s)-1]}
			}
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		} else {
			msg += "; see " + cmd.CommandPath() + " --help"
		}
		unknown = UsageError{errors.New(msg)}
	})
	return &unknown
}

// Args wraps a cobra positional-argument rule so its failure is a usage error that names the
// verb (without the program name, which the printed line starts with already).
func Args(rule cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := rule(cmd, a); err != nil {
			return UsageError{fmt.Errorf("%s: %w", verbName(cmd), err)}
		}
		return nil
	}
}

// NoArgs is the rule of a verb that takes no arguments.
func NoArgs(cmd *cobra.Command, a []string) error { return Args(noArgs)(cmd, a) }

// noArgs says what cobra.NoArgs says without calling the argument a command.
func noArgs(_ *cobra.Command, a []string) error {
	if len(a) > 0 {
		return fmt.Errorf("takes no arguments, got %q", a[0])
	}
	return nil
}

// verbName is the command's path without the program's name: "node list".
func verbName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// client builds the API client from flags and environment.
func (e *env) client() (*client.Client, error) {
	tok, err := e.flagToken()
	if err != nil {
		return nil, err
	}
	if tok == "" {
		tok = e.getenv("FERRY_TOKEN")
	}
	c, err := client.New(e.serverAddr(), tok)
	if err != nil {
		return nil, UsageError{err}
	}
	if err := c.UseTLS(e.tlsOptions()); err != nil {
		return nil, UsageError{err}
	}
	return c, nil
}

// tlsOptions are the CA file and client certificate from flags, else the environment.
func (e *env) tlsOptions() pki.ClientOptions {
	pick := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return e.getenv(env)
	}
	return pki.ClientOptions{
		CAFile:   pick(e.caCert, "FERRY_CACERT"),
		CertFile: pick(e.clientCert, "FERRY_CLIENT_CERT"),
		KeyFile:  pick(e.clientKey, "FERRY_CLIENT_KEY"),
	}
}

// serverAddr is --server, else $FERRY_ADDR, else the default.
func (e *env) serverAddr() string {
	if e.addr != "" {
		return e.addr
	}
	if a := e.getenv("FERRY_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// flagToken is the token given by --token or --token-file.
func (e *env) flagToken() (string, error) {
	if e.token != "" || e.tokenFile == "" {
		return e.token, nil
	}
	b, err := os.ReadFile(e.tokenFile)
	if err != nil {
		return "", fmt.Errorf("read --token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (e *env) json() bool { return e.output == "json" }

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints aligned columns. Every cell goes through safe: cells hold what the server sent,
// and a control character in one would reach the terminal (or a tab or newline break the
// columns).
func (e *env) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		clean := make([]string, len(cells))
		for i, c := range cells {
			clean[i] = safe(c)
		}
		fmt.Fprintln(tw, strings.Join(clean, "\t"))
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and protocol range",
		Args:  NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "ferry %s (agent protocol %d, server accepts %d-%d)\n", api.Version, api.Protocol, api.MinProtocol, api.MaxProtocol)
			return nil
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listVerb makes a list verb: it fetches the items and prints them as JSON or as an aligned
// table, one row per item.
func listVerb[T any](e *env, use, short string, rule cobra.PositionalArgs,
	fetch func(ctx context.Context, c *client.Client, args []string) ([]T, error),
	header []string, row func(T) []string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  Args(rule),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			items, err := fetch(cmd.Context(), c, a)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(items)
			}
			rows := make([][]string, 0, len(items))
			for _, it := range items {
				rows = append(rows, row(it))
			}
			return e.table(header, rows)
		},
	}
}
