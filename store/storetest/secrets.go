package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/store"
)

// A secret is written once: the first value put under a name stays, and every later put, also
// of many racing callers, gets that value back. Names are independent, values are kept byte
// for byte, and neither an empty name nor an empty value is stored.
func testSecrets(t *testing.T, s store.Store) {
	ctx := context.Background()
	put := func(name string, value, want []byte) {
		t.Helper()
		got, err := s.PutSecret(ctx, name, value)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("PutSecret(%q, %x) = %x, %v; want %x", name, value, got, err, want)
		}
	}
	// Every byte value, a NUL included, and more than a page of them.
	first := bytes.Repeat([]byte{0, 1, 0xfe, 0xff}, 1500)
	for i := range 256 {
		first[i] = byte(i)
	}
	put("session", first, first)
	put("session", []byte("second"), first)
	put("ca", []byte("the CA"), []byte("the CA"))
	put("session", []byte("third"), first)

	// The value returned is the caller's own copy.
	got, _ := s.PutSecret(ctx, "ca", []byte("x"))
	got[0] = 'X'
	put("ca", []byte("y"), []byte("the CA"))

	for _, bad := range []struct {
		name  string
		value []byte
	}{{"", []byte("v")}, {"empty", nil}, {"empty", []byte{}}} {
		if v, err := s.PutSecret(ctx, bad.name, bad.value); err == nil {
			t.Fatalf("PutSecret(%q, %q) = %q; want an error", bad.name, bad.value, v)
		}
	}
	put("empty", []byte("later"), []byte("later"))

	// Of many callers putting one name at once, each with its own value, all get one back.
	const n = 16
	var wg sync.WaitGroup
	results := make(chan []byte, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.PutSecret(ctx, "race", []byte(fmt.Sprintf("value %d", i)))
			if err != nil {
				t.Error(err)
			}
			results <- v
		}()
	}
	wg.Wait()
	close(results)
	var won []byte
	for v := range results {
		if won == nil {
			won = v
		}
		if !bytes.Equal(v, won) {
			t.Fatalf("racing puts got %q and %q back", won, v)
		}
	}
	put("race", []byte("late"), won)
}
