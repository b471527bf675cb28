// Package cli is the ferry command line: every verb, from server and agent to the operator
// commands, behind one Run function. Operator verbs reach the server only through the client
// package.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/spf13/cobra"
)

// DefaultAddr is where the CLI finds the server when FERRY_ADDR is not set.
const DefaultAddr = "https://127.0.0.1:7700"

// UsageError is a mistake in how ferry was called; it exits with status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

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

// Run executes ferry with args (without the program name), printing to stdout and stderr.
// It prints nothing for errors: the caller prints the one line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, stdout, stderr, os.Getenv)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
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
				return usagef("invalid --output %q: want table or json", e.output)
			}
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&e.addr, "server", "", "server address (default $FERRY_ADDR or "+DefaultAddr+")")
	pf.StringVar(&e.token, "token", "", "API token (default $FERRY_TOKEN)")
	pf.StringVar(&e.tokenFile, "token-file", "", "file holding the API token")
	pf.StringVarP(&e.output, "output", "o", "table", "output format of list and show verbs: table or json")
	pf.StringVar(&e.caCert, "ca-cert", "", "CA file that verifies the server (default $FERRY_CACERT, else the system's roots)")
	pf.StringVar(&e.clientCert, "client-cert", "", "client certificate for servers that require one (default $FERRY_CLIENT_CERT)")
	pf.StringVar(&e.clientKey, "client-key", "", "key of --client-cert (default $FERRY_CLIENT_KEY)")

	root.AddCommand(
		e.serverCmd(), e.agentCmd(), e.devCmd(),
		e.siteCmd(), e.tokenCmd(), e.releaseCmd(), e.keyCmd(), e.channelCmd(), e.bulletinCmd(), e.deployCmd(), e.nodeCmd(), e.eventsCmd(), e.versionCmd(),
	)
	_, err := root.ExecuteContextC(ctx)
	if err != nil && !ran && !errors.As(err, new(UsageError)) {
		// Cobra's own complaints (unknown command, wrong argument count) are usage errors.
		return UsageError{err}
	}
	return err
}

// args wraps a cobra positional-argument rule so its failure is a usage error.
func args(rule cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := rule(cmd, a); err != nil {
			return UsageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
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

// logger makes the structured logger for long-running verbs.
func (e *env) logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: l})), nil
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
		Args:  args(rule),
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
