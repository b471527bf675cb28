package store

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// What the tail answers is what the database holds, event for event, for any since and limit:
// after a reopen, across transactions of one and of many events, with and without data, and once
// it has dropped its oldest; a since from before what it holds goes to the database.
func TestTailReadsAsTheLog(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "ferry.db")
	s, err := openSQLite(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	write := func(n int) {
		t.Helper()
		err := s.Update(WithActor(ctx, Actor{ID: "token:abc", Role: "admin", Source: "127.0.0.1"}), func(tx Tx) error {
			var evs []api.Event
			for i := range n {
				e := api.NewEvent(at.Add(time.Duration(i)), api.EventNodeUp, fmt.Sprintf("n%d", i), api.NodeStatusChanged{From: "down"})
				switch i % 3 {
				case 0:
					e.Data = nil
				case 1:
					e = api.NewEvent(e.Time, api.EventNodeUp, e.Subject, struct{}{}) // data {}
				}
				evs = append(evs, e)
			}
			_, err := tx.AppendEvents(evs...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		last, err := s.LastEventID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, since := range []int64{0, 1, last / 2, last - tailMax, last - 5, last - 1, last, last + 3} {
			for _, limit := range []int{1, 7, FeedBatch} {
				want, err := s.logEvents(ctx, since, limit)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Events(ctx, since, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) || len(got) > 0 && !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: Events(%d, %d) = %d events, the log holds %d:\n%+v\nwant\n%+v", when, since, limit, len(got), len(want), first(got), first(want))
				}
			}
		}
	}
	write(3)
	s.Close()
	if s, err = openSQLite(ctx, file); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after a reopen")
	write(1)
	write(40)
	check("after two writes")
	if _, ok := s.tail.after(3, 10); !ok {
		t.Error("the tail did not answer for what was written since it started")
	}
	if _, ok := s.tail.after(2, 10); ok {
		t.Error("the tail answered for events from before it started")
	}
	for range 3 {
		write(tailMax / 2)
	}
	check("once the tail dropped its oldest")
	if _, ok := s.tail.after(44, 10); ok {
		t.Error("the tail answered for events it dropped")
	}
}

func first(evs []api.Event) []api.Event { return evs[:min(len(evs), 2)] }
