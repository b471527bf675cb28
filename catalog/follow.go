package catalog

import (
	"slices"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Nodes may follow a channel for an app instead of pinning a version (assign.Follow): their
// desired release is the channel's candidate, and every change of the candidate (a promotion
// into the channel, a withdrawal out of it, a republish) moves them in the same transaction.

// Candidate is the channel's candidate of app, "" when the channel holds none, as of tx.
func Candidate(tx store.Tx, channel, app string) (string, error) {
	vers, err := tx.ChannelVersions(channel, app)
	return highest(vers), err
}

// moveFollowers moves the nodes that follow each of channels for app to the channel's
// candidate, in tx, with one release.deployed event per channel that moved any; a channel left
// without a candidate keeps its followers where they are.
func moveFollowers(tx store.Tx, app string, channels []string, now time.Time) error {
	for _, ch := range channels {
		cand, err := Candidate(tx, ch, app)
		if err != nil || cand == "" {
			return err
		}
		moved, err := tx.MoveFollowers(app, ch, cand, now)
		if err != nil || len(moved) == 0 {
			return err
		}
		slices.Sort(moved)
		if _, err := store.AppendOne(tx, api.NewEvent(now, api.EventReleaseDeployed, app+"@"+cand, api.ReleaseDeployed{Nodes: moved, Channel: ch})); err != nil {
			return err
		}
	}
	return nil
}
