// Package catalog is the service that keeps the release catalog: the signing keys releases are
// checked against, push admission, channels and their promotion order, withdrawal and
// republishing, and the bulletin of what is available and what runs. Its rules are Go here; the
// store only stores. Each write runs its rules, state and events in one store transaction
// (store.Updater) and returns the events, which reach agents and followers through the change
// feed.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"github.com/ferryhq/ferry/store"
)

// Service is the catalog.
type Service struct {
	store  store.Store
	blobs  *blobstore.Store
	clk    clock.Clock
	limits release.Limits
	log    *slog.Logger
}

// New returns the catalog over st and blobs, on clk; pushed bundles are checked within lim.
func New(st store.Store, blobs *blobstore.Store, clk clock.Clock, lim release.Limits, log *slog.Logger) *Service {
	return &Service{store: st, blobs: blobs, clk: clk, limits: lim, log: log}
}

// Limits of what operators write into the catalog.
const (
	MaxKeyComment = 200
	MaxReason     = 500
)

// TrustKey trusts a minisign public key (its base64 form) for release signatures. A key that was
// revoked cannot be trusted again.
func (s *Service) TrustKey(ctx context.Context, publicKey, comment string) (api.SigningKey, api.Event, error) {
	pub, err := signing.ParsePublicKey(publicKey)
	if err != nil {
		return api.SigningKey{}, api.Event{}, fault.Invalid("%v", err)
	}
	if len(comment) > MaxKeyComment {
		return api.SigningKey{}, api.Event{}, fault.Invalid("comment longer than %d characters", MaxKeyComment)
	}
	k := api.SigningKey{ID: fmt.Sprintf("%016X", pub.ID()), PublicKey: pub.String(), Comment: comment, CreatedAt: s.clk.Now().UTC()}
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		old, err := tx.Key(k.ID, k.PublicKey)
		switch {
		case err == nil && old.RevokedAt != nil:
			return fault.Conflict("key %s was revoked and cannot be trusted again; make a new key", k.ID)
		case err == nil:
			return fault.Conflict("key %s is already trusted", k.ID)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := tx.InsertKey(k); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(k.CreatedAt, api.EventKeyTrusted, k.ID, api.KeyTrusted{Comment: comment}))
		return err
	})
	return k, ev, err
}

// RevokeKey revokes a trusted key: signatures by it no longer verify, on the server or on agents.
func (s *Service) RevokeKey(ctx context.Context, id string) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		ok, err := tx.RevokeKey(id, now)
		if err != nil {
			return err
		}
		if !ok {
			return fault.NotFound("trusted key %q not found", id)
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventKeyRevoked, id, nil))
		return err
	})
	return ev, err
}

// CreateChannel adds a channel right after another in the promotion order.
func (s *Service) CreateChannel(ctx context.Context, c api.ChannelCreate) (api.Event, error) {
	if err := labels.CheckName("channel name", c.Name); err != nil {
		return api.Event{}, fault.Invalid("%v", err)
	}
	if c.After == "" {
		return api.Event{}, fault.Invalid("give --after CHANNEL: the channel the new one follows")
	}
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		if channelIndex(chans, c.After) < 0 {
			return fault.NotFound("channel %q not found", c.After)
		}
		if channelIndex(chans, c.Name) >= 0 {
			return fault.Conflict("channel %q already exists", c.Name)
		}
		if err := tx.InsertChannel(c.Name, c.After, c.AllowUnsigned, now); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventChannelCreated, c.Name, api.ChannelCreated{After: c.After, AllowUnsigned: c.AllowUnsigned}))
		return err
	})
	return ev, err
}

// SetAllowUnsigned changes whether a channel accepts unsigned releases; no event when it does
// already. A channel that holds unsigned releases cannot stop accepting them.
func (s *Service) SetAllowUnsigned(ctx context.Context, name string, allow bool) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		i := channelIndex(chans, name)
		if i < 0 {
			return fault.NotFound("channel %q not found", name)
		}
		if chans[i].AllowUnsigned == allow {
			return nil
		}
		if !allow {
			unsigned, err := tx.Unsigned(name)
			if err != nil {
				return err
			}
			if len(unsigned) > 0 {
				return fault.Conflict("channel %s holds unsigned releases (%s); withdraw them first", name, strings.Join(unsigned, ", "))
			}
		}
		if err := tx.SetAllowUnsigned(name, allow); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventChannelChanged, name, api.ChannelChanged{AllowUnsigned: allow}))
		return err
	})
	return ev, err
}

// Promote adds a release to a channel. Releases move one channel at a time, in promotion order,
// unless force; a withdrawn release moves nowhere, and an unsigned one only into channels that
// allow unsigned releases.
func (s *Service) Promote(ctx context.Context, app, version, to string, force bool) (api.Event, error) {
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rel, err := Live(tx, app, version, "promote")
		if err != nil {
			return err
		}
		chans, err := tx.Channels()
		if err != nil {
			return err
		}
		i := channelIndex(chans, to)
		if i < 0 {
			return fault.NotFound("channel %q not found", to)
		}
		if err := admitUnsigned(rel, chans[i]); err != nil {
			return err
		}
		if slices.Contains(rel.Channels, to) {
			return fault.Conflict("%s@%s is already in %s", app, version, to)
		}
		from := ""
		if i > 0 && slices.Contains(rel.Channels, chans[i-1].Name) {
			from = chans[i-1].Name
		}
		switch {
		case from != "" || force:
		case i == 0:
			return fault.Conflict("%s is the first channel; releases land there when pushed", to)
		default:
			return fault.Conflict("%s@%s is not in %s, the channel before %s; promote it there first, or skip steps with --force", app, version, chans[i-1].Name, to)
		}
		action := "promoted"
		if from == "" {
			action = "forced"
		}
		if err := tx.AddToChannel(to, app, version, action, "", now); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventReleasePromoted, app+"@"+version,
			api.ReleasePromoted{To: to, From: from, Forced: from == ""}))
		if err != nil {
			return err
		}
		return moveFollowers(tx, app, []string{to}, now)
	})
	return ev, err
}

// Withdraw marks a release withdrawn for a reason and takes it out of every channel. Nodes
// assigned it get a new desired state that says so: those that have not installed it yet do not.
func (s *Service) Withdraw(ctx context.Context, app, version, reason string) (api.Event, error) {
	if strings.TrimSpace(reason) == "" || len(reason) > MaxReason {
		return api.Event{}, fault.Invalid("give --reason: why the release must not be installed (up to %d characters)", MaxReason)
	}
	now := s.clk.Now().UTC()
	var ev api.Event
	err := s.store.Update(ctx, func(tx store.Tx) error {
		rel, err := tx.Release(app, version)
		if err != nil {
			return err
		}
		if rel.Withdrawn != "" {
			return fault.Conflict("release %s@%s is already withdrawn (reason: %s)", app, version, rel.Withdrawn)
		}
		channels, nodes, err := tx.WithdrawRelease(app, version, reason, now)
		if err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventReleaseWithdrawn, app+"@"+version,
			api.ReleaseWithdrawn{Reason: reason, Channels: channels, AssignedNodes: len(nodes)}))
		if err != nil {
			return err
		}
		return moveFollowers(tx, app, channels, now)
	})
	return ev, err
}

// Republish is "downgrade by upgrading": the content of app@version again, under the same
// version with a higher epoch, so it outranks everything of lower epochs. It lands in the first
// channel, as a push does, without uploading the bundle again.
func (s *Service) Republish(ctx context.Context, app, version string, epoch uint32) (api.Release, api.Event, error) {
	old, err := release.ParseVersion(version)
	if err != nil {
		return api.Release{}, api.Event{}, fault.Invalid("%v", err)
	}
	if epoch <= old.Epoch {
		return api.Release{}, api.Event{}, fault.Invalid("--epoch must be greater than %d, the epoch of %s@%s", old.Epoch, app, version)
	}
	newVersion := release.Version{Epoch: epoch, Semver: old.Semver}.String()
	now := s.clk.Now().UTC()
	var ev api.Event
	err = s.store.Update(ctx, func(tx store.Tx) error {
		rel, err := tx.Release(app, version)
		if err != nil {
			return err
		}
		if _, err := tx.Release(app, newVersion); err == nil {
			return fault.Conflict("release %s@%s already exists", app, newVersion)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		first, err := firstChannel(tx)
		if err != nil {
			return err
		}
		if err := admitUnsigned(rel, first); err != nil {
			return err
		}
		rel.Version, rel.CreatedAt = newVersion, now
		if err := tx.InsertRelease(rel); err != nil {
			return err
		}
		if err := tx.AddToChannel(first.Name, app, newVersion, "republished", "from "+version, now); err != nil {
			return err
		}
		ev, err = store.AppendOne(tx, api.NewEvent(now, api.EventReleaseRepublished, app+"@"+newVersion,
			api.ReleaseRepublished{From: version, Channel: first.Name}))
		if err != nil {
			return err
		}
		return moveFollowers(tx, app, []string{first.Name}, now)
	})
	if err != nil {
		return api.Release{}, ev, err
	}
	rel, err := s.store.Release(ctx, app, newVersion)
	return rel, ev, err
}

// Live returns app@version unless it is withdrawn: a withdrawn release goes nowhere, neither into
// a channel nor onto a node. verb is what the caller would have done with it ("promote").
func Live(tx store.Tx, app, version, verb string) (api.Release, error) {
	rel, err := tx.Release(app, version)
	if err == nil && rel.Withdrawn != "" {
		err = fault.Conflict("release %s@%s is withdrawn (reason: %s); %s another version", app, version, rel.Withdrawn, verb)
	}
	return rel, err
}

// admitUnsigned refuses an unsigned release for a channel that does not allow unsigned ones.
func admitUnsigned(rel api.Release, c api.Channel) error {
	if rel.SignedBy != "" || c.AllowUnsigned {
		return nil
	}
	return fault.Conflict("%s@%s is unsigned and channel %s does not allow unsigned releases; sign it with ferry release sign", rel.App, rel.Version, c.Name)
}

// firstChannel is where pushed and republished releases land.
func firstChannel(tx store.Tx) (api.Channel, error) {
	chans, err := tx.Channels()
	if err != nil {
		return api.Channel{}, err
	}
	if len(chans) == 0 {
		return api.Channel{}, errors.New("the catalog has no channels")
	}
	return chans[0], nil
}

func channelIndex(chans []api.Channel, name string) int {
	return slices.IndexFunc(chans, func(c api.Channel) bool { return c.Name == name })
}
