package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/labels"
	"github.com/spf13/cobra"
)

func (e *env) logsCmd() *cobra.Command {
	var q client.LogsQuery
	var raw bool
	cmd := &cobra.Command{
		Use:   "logs NODE APP [--process P] [--tail N] [--follow]",
		Short: "Print an app's process logs from a node, and with --follow what they write next (admin)",
		Long: `Print the last lines of an app's process logs on a node, through the server: the node's
agent sends them over a connection of its own, so nothing is opened on the node. With several
processes and no --process, each line starts with its process's name. --follow goes on printing
what the processes write until Ctrl-C (at most an hour). Characters that could steer the
terminal are shown escaped, unless --raw.`,
		Args: Args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := labels.CheckName("node name", a[0]); err != nil {
				return UsageError{err}
			}
			if err := labels.CheckName("app name", a[1]); err != nil {
				return UsageError{err}
			}
			if q.Process != "" {
				if err := labels.CheckName("process name", q.Process); err != nil {
					return UsageError{err}
				}
			}
			if q.Tail < 0 || q.Tail > api.MaxLogsTail {
				return Usagef("invalid --tail %d: want 0 to %d lines", q.Tail, api.MaxLogsTail)
			}
			if q.Tail == 0 && !q.Follow {
				return Usagef("--tail 0 prints nothing without --follow")
			}
			q.App = a[1]
			c, err := e.client()
			if err != nil {
				return err
			}
			return e.printLogs(cmd.Context(), c, a[0], q, raw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&q.Process, "process", "", "only this process's log (default: all the app's processes)")
	f.IntVarP(&q.Tail, "tail", "n", api.DefaultLogsTail, fmt.Sprintf("lines to print from the end of each process's log, 0 to %d", api.MaxLogsTail))
	f.BoolVarP(&q.Follow, "follow", "f", false, "go on printing what the processes write, until Ctrl-C")
	f.BoolVar(&raw, "raw", false, "print the bytes as the processes wrote them, control characters included")
	return cmd
}

// printLogs copies a node's logs to stdout as they come, until the server ends them or ctx
// ends (Ctrl-C, which is no failure).
func (e *env) printLogs(ctx context.Context, c *client.Client, node string, q client.LogsQuery, raw bool) error {
	body, err := c.NodeLogs(ctx, node, q)
	if err != nil {
		return err
	}
	defer body.Close()
	if raw {
		_, err = io.Copy(e.stdout, body)
	} else {
		err = copySafeLines(e.stdout, body)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("the logs of %s were cut off: %w", node, err)
	}
	return nil
}

// copySafeLines copies r to w line by line, with the characters that could steer a terminal
// escaped (safe); tabs stay. A line longer than the buffer goes out in pieces.
func copySafeLines(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s := string(line)
			nl := strings.HasSuffix(s, "\n")
			s = strings.TrimSuffix(s, "\n")
			parts := strings.Split(s, "\t")
			for i, p := range parts {
				parts[i] = safe(p)
			}
			s = strings.Join(parts, "\t")
			if nl {
				s += "\n"
			}
			if _, werr := io.WriteString(w, s); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}
