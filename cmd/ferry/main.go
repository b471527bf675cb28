// Command ferry is the one binary of Ferry: the operator CLI, with the daemons (server, agent
// and dev mode) added to its verbs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferryhq/ferry/cli"
	"github.com/ferryhq/ferry/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, daemon.Server, daemon.Agent, daemon.Dev, daemon.ExampleHello)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, cli.Message(err))
	}
	os.Exit(cli.ExitCode(err))
}
