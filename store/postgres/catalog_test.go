package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// race runs fn n times at once, spread over the replicas, and returns what each returned.
func race(replicas []*Store, n int, fn func(s *Store, i int) error) []error {
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(replicas[i%len(replicas)], i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// Update transactions run one at a time across replicas, so what one reads stays true until it
// commits. Of pushers on two replicas that each find a release missing and push it, one pushes
// it and the others find it there (none finds it missing while another is pushing it), and the
// log records one push.
func TestUpdatePushRace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := pg.DB(t)
	replicas := []*Store{open(t, url), open(t, url)}
	errThere := errors.New("the release is there")
	const pushers = 8
	errs := race(replicas, pushers, func(s *Store, _ int) error {
		return s.Update(ctx, func(tx store.Tx) error {
			_, err := tx.Release("hello", "1.0.0")
			switch {
			case err == nil:
				return errThere
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			r := api.Release{App: "hello", Version: "1.0.0", Class: "minor", SHA256: "aa", CreatedAt: time.Now()}
			if err := tx.InsertRelease(r); err != nil {
				return err
			}
			_, err = tx.AppendEvents(api.NewEvent(r.CreatedAt, api.EventReleasePushed, "hello@1.0.0", nil))
			return err
		})
	})
	pushed := 0
	for _, err := range errs {
		switch {
		case err == nil:
			pushed++
		case !errors.Is(err, errThere):
			t.Errorf("a pusher failed: %v", err)
		}
	}
	if pushed != 1 {
		t.Fatalf("%d of %d pushers pushed the release", pushed, pushers)
	}
	evs, err := replicas[1].Events(ctx, 0, 100)
	if err != nil || len(evs) != 1 || evs[0].Type != api.EventReleasePushed {
		t.Fatalf("log = %+v, %v; want one push", evs, err)
	}
}

// Read-modify-writes of one node's apps through Update, from writers on two replicas, lose
// none of the writes.
func TestUpdateLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := pg.DB(t)
	replicas := []*Store{open(t, url), open(t, url)}
	a := replicas[0]
	if err := a.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertSite(api.Site{Name: "ams", Tier: 1, CreatedAt: time.Now()}); err != nil {
			return err
		}
		return tx.InsertNode("ams", store.NodeRecord{Name: "n1", PublicKey: "pk"}, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 6, 10
	errs := race(replicas, writers, func(s *Store, w int) error {
		for i := 0; i < rounds; i++ {
			if err := s.Update(ctx, func(tx store.Tx) error {
				apps, err := tx.NodeApps("n1")
				if err != nil {
					return err
				}
				return tx.SetNodeApps("n1", append(apps, api.NodeApp{App: fmt.Sprintf("w%d-%d", w, i)}))
			}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := replicas[1].Node(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, app := range n.Apps {
		seen[app.App] = true
	}
	if len(n.Apps) != writers*rounds || len(seen) != writers*rounds {
		t.Fatalf("the node has %d apps (%d different) after %d writes", len(n.Apps), len(seen), writers*rounds)
	}
}
