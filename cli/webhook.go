package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/spf13/cobra"
)

func (e *env) webhookCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "Send events to HTTP receivers, signed, with retries"}
	var events, secretFile string
	add := &cobra.Command{
		Use:   "add URL --events GLOB[,GLOB...] [--secret-file F]",
		Short: "Post every event whose type matches a glob to URL; print the signing secret",
		Long: "Each matching event is POSTed to URL as JSON, with X-Ferry-Event (its type), X-Ferry-Delivery\n" +
			"(the same on every try) and X-Ferry-Signature-256: sha256=HEX, the HMAC-SHA256 of the body under\n" +
			"the webhook's secret. Failed deliveries are retried with backoff; after the last try they are\n" +
			"kept as dead letters (webhook failures ID), which webhook retry ID delivers again.\n" +
			"Globs: 'rollout.*', 'app.state', '*'.\n" +
			"Without --secret-file the server makes the secret and it is printed alone on stdout, once.",
		Args: Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if events == "" {
				return Usagef("webhook add: give --events, e.g. --events 'rollout.*' (or '*' for every event)")
			}
			req := api.WebhookAdd{URL: a[0], Events: events}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("read --secret-file: %w", err)
				}
				req.Secret = strings.TrimRight(string(b), "\r\n")
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			w, err := c.AddWebhook(cmd.Context(), req)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(w)
			}
			if secretFile != "" {
				e.printf("%s\n", w.ID)
				return nil
			}
			e.printf("%s\n", w.Secret)
			fmt.Fprintf(e.stderr, "webhook %s added; deliveries are signed with the secret above, which is not shown again\n", w.ID)
			return nil
		},
	}
	add.Flags().StringVar(&events, "events", "", "globs over event types, comma-separated: 'rollout.*', 'app.state', '*'")
	add.Flags().StringVar(&secretFile, "secret-file", "", "file holding the signing secret (16 to 256 bytes); default: the server makes one")
	list := listVerb(e, "list", "List webhooks with their dead-letter counts (never their secrets)", noArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.Webhook, error) { return c.Webhooks(ctx) },
		[]string{"ID", "URL", "EVENTS", "DELIVERED THROUGH", "FAILURES", "CREATED"},
		func(w api.Webhook) []string {
			return []string{w.ID, w.URL, strings.Join(w.Events, ","), strconv.FormatInt(w.Cursor, 10), strconv.Itoa(w.Failures), w.CreatedAt.Format(time.RFC3339)}
		})
	failures := listVerb(e, "failures ID", "List a webhook's dead letters: deliveries given up after their last try, newest first", cobra.ExactArgs(1),
		func(ctx context.Context, c *client.Client, a []string) ([]api.DeliveryFailure, error) {
			return c.WebhookFailures(ctx, a[0])
		},
		[]string{"EVENT", "TYPE", "ATTEMPTS", "FAILED", "ERROR"},
		func(f api.DeliveryFailure) []string {
			return []string{strconv.FormatInt(f.EventID, 10), f.EventType, strconv.Itoa(f.Attempts), f.FailedAt.Format(time.RFC3339), f.Error}
		})
	rm := removeVerb(e, "rm ID", "Remove a webhook; its pending deliveries and dead letters go with it", "webhook",
		func(ctx context.Context, c *client.Client, id string) error { return c.RemoveWebhook(ctx, id) })
	cmd.AddCommand(add, list, failures, e.webhookRetryCmd(), rm)
	return cmd
}

// webhookRetryCmd is webhook retry: dead letters back in the queue, delivered by the server in
// the background; a new failure makes them dead letters again.
func (e *env) webhookRetryCmd() *cobra.Command {
	var event int64
	var all bool
	cmd := &cobra.Command{
		Use:   "retry ID --id EVENT | --all",
		Short: "Deliver a webhook's dead letters again: one event's (--id, the EVENT of webhook failures) or all",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if all == (event != 0) || event < 0 {
				return Usagef("webhook retry: give --id EVENT (see webhook failures %s) or --all", a[0])
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.RetryWebhook(cmd.Context(), a[0], api.WebhookRetry{EventID: event, All: all})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(res)
			}
			ids := make([]string, len(res.Events))
			for i, id := range res.Events {
				ids[i] = strconv.FormatInt(id, 10)
			}
			e.printf("%d dead letter(s) of webhook %s queued for delivery again (events %s); a new failure lists them again\n", len(ids), a[0], strings.Join(ids, ", "))
			return nil
		},
	}
	cmd.Flags().Int64Var(&event, "id", 0, "the event whose dead letter to retry (the EVENT column of webhook failures)")
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter of the webhook")
	return cmd
}
