package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// RunTx runs the tests of store.Tx, through Update, and of the reads of what it writes: Keys,
// Release, Releases, ReferencedBlobs and Channels. open returns a new, empty store that is also
// a store.Updater. Nodes are set up with store.Store's own methods; no test calls the writes the
// services take over (TrustKey, PutRelease, Promote, Assign, SetApps …), so a backend that
// writes the catalog through Update only passes them.
//
// The tests go on using a transaction after a primitive has refused something (ErrNotFound,
// ErrExists), as a service may: the refusal must leave the transaction usable.
func RunTx(t *testing.T, open func(t *testing.T) store.Store) {
	for _, tt := range []suiteTest{
		{"Keys", testTxKeys},
		{"Releases", testTxReleases},
		{"Channels", testTxChannels},
		{"Withdraw", testTxWithdraw},
		{"AssignNodes", testTxAssignNodes},
		{"Follow", testTxFollow},
		{"ControlApp", testTxControlApp},
		{"NodeApps", testTxNodeApps},
		{"AppendEvents", testTxAppendEvents},
		{"Rollback", testTxRollback},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// cest is a zone other than UTC: times given in it are read back in UTC.
var cest = time.FixedZone("CEST", 2*3600)

// updater returns s as a store.Updater, failing t when it is not one.
func updater(t *testing.T, s store.Store) store.Updater {
	t.Helper()
	u, ok := s.(store.Updater)
	if !ok {
		t.Fatalf("%T is not a store.Updater", s)
	}
	return u
}

// update runs fn in one Update of s and fails t when it fails. fn may fail t itself: the
// transaction is rolled back then.
func update(t *testing.T, ctx context.Context, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := updater(t, s).Update(ctx, fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// wantErr fails t unless err is target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: %v; want %v", what, err, target)
	}
}

// sorted returns names sorted, for lists in no particular order.
func sorted(names []string) string { return fmt.Sprint(slices.Sorted(slices.Values(names))) }

// release is a signed release of app@version pushed at t0 plus after.
func release(app, version, blob string, after time.Duration) api.Release {
	return api.Release{App: app, Version: version, Class: "minor", SHA256: blob, Size: 7, SignedBy: "0123456789ABCDEF",
		Signature: "sig-" + blob, CreatedAt: t0.Add(after), Manifest: map[string]any{"app": app, "size": float64(7)}}
}

// insertReleases records releases in one Update.
func insertReleases(t *testing.T, s store.Store, rs ...api.Release) {
	t.Helper()
	update(t, context.Background(), s, func(tx store.Tx) error {
		for _, r := range rs {
			if err := tx.InsertRelease(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkRelease fails t unless got is want as stored: in UTC, neither withdrawn nor in any
// channel.
func checkRelease(t *testing.T, got, want api.Release) {
	t.Helper()
	if got.CreatedAt.Location() != time.UTC || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("%s@%s created at %s, want %s in UTC", want.App, want.Version, got.CreatedAt, want.CreatedAt)
	}
	want.CreatedAt, got.CreatedAt = time.Time{}, time.Time{}
	want.Channels, want.Withdrawn = []string{}, ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("release read back as\n%#v\nwant\n%#v", got, want)
	}
}

// generations returns the generation of each named node.
func generations(t *testing.T, s store.Store, names ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, name := range names {
		n, err := s.Node(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = n.Generation
	}
	return out
}

// checkGenerations fails t unless each node's generation moved from before by the step given.
func checkGenerations(t *testing.T, s store.Store, before map[string]int64, steps map[string]int64) {
	t.Helper()
	for name, gen := range before {
		if got := generations(t, s, name)[name]; got != gen+steps[name] {
			t.Fatalf("%s at generation %d, want %d", name, got, gen+steps[name])
		}
	}
}

func testTxKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	if keys, err := s.Keys(ctx); err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("Keys of an empty store = %#v, %v; want an empty list", keys, err)
	}
	k1 := api.SigningKey{ID: "0123456789ABCDEF", PublicKey: "RWQ-one", Comment: "release team", CreatedAt: t0.Add(time.Hour).In(cest)}
	k2 := api.SigningKey{ID: "FEDCBA9876543210", PublicKey: "RWQ-two", CreatedAt: t0}
	revoked := t0.Add(2 * time.Hour).In(cest)
	update(t, ctx, s, func(tx store.Tx) error {
		_, err := tx.Key(k1.ID, k1.PublicKey)
		wantErr(t, "Key of an empty store", err, store.ErrNotFound)
		for _, k := range []api.SigningKey{k1, k2} {
			if err := tx.InsertKey(k); err != nil {
				return err
			}
		}
		wantErr(t, "a key id again", tx.InsertKey(api.SigningKey{ID: k1.ID, PublicKey: "RWQ-three", CreatedAt: t0}), store.ErrExists)
		wantErr(t, "a public key again", tx.InsertKey(api.SigningKey{ID: "1111111111111111", PublicKey: k2.PublicKey, CreatedAt: t0}), store.ErrExists)
		for _, c := range []struct{ id, publicKey, want string }{
			{k1.ID, "", k1.ID},
			{"", k2.PublicKey, k2.ID},
			{k2.ID, k2.PublicKey, k2.ID},
			{k1.ID, "RWQ-unknown", k1.ID},
			{"2222222222222222", k1.PublicKey, k1.ID},
		} {
			k, err := tx.Key(c.id, c.publicKey)
			if err != nil || k.ID != c.want {
				t.Fatalf("Key(%q, %q) = %+v, %v; want %s", c.id, c.publicKey, k, err, c.want)
			}
		}
		_, err = tx.Key("2222222222222222", "RWQ-unknown")
		wantErr(t, "Key of neither", err, store.ErrNotFound)

		for _, c := range []struct {
			id   string
			want bool
		}{{k1.ID, true}, {k1.ID, false}, {"2222222222222222", false}} {
			if ok, err := tx.RevokeKey(c.id, revoked); err != nil || ok != c.want {
				t.Fatalf("RevokeKey(%s) = %v, %v; want %v", c.id, ok, err, c.want)
			}
		}
		k, err := tx.Key(k1.ID, "")
		if err != nil || k.RevokedAt == nil || !k.RevokedAt.Equal(revoked) {
			t.Fatalf("revoked key = %+v, %v", k, err)
		}
		return nil
	})

	// Oldest first, in UTC, the revoked key included.
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("Keys = %+v, %v", keys, err)
	}
	for i, want := range []api.SigningKey{k2, k1} {
		k := keys[i]
		if k.ID != want.ID || k.PublicKey != want.PublicKey || k.Comment != want.Comment || !k.CreatedAt.Equal(want.CreatedAt) || k.CreatedAt.Location() != time.UTC {
			t.Fatalf("key %d = %+v, want %+v", i, k, want)
		}
	}
	if r := keys[1].RevokedAt; r == nil || !r.Equal(revoked) || r.Location() != time.UTC || keys[0].RevokedAt != nil {
		t.Fatalf("revocations: %v and %v; want none and %s in UTC", keys[0].RevokedAt, r, revoked)
	}
}

func testTxReleases(t *testing.T, s store.Store) {
	ctx := context.Background()
	if list, err := s.Releases(ctx, ""); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("Releases of an empty store = %#v, %v; want an empty list", list, err)
	}
	if refs, err := s.ReferencedBlobs(ctx); err != nil || len(refs) != 0 {
		t.Fatalf("ReferencedBlobs of an empty store = %v, %v", refs, err)
	}
	hello := release("hello", "1.0.0", "aa", time.Minute)
	hello.CreatedAt = hello.CreatedAt.In(cest)
	all := []api.Release{
		release("hello", "0.9.0", "bb", 0),
		hello,
		release("hello", "1.1.0", "aa", time.Minute), // the same blob, pushed at the same time
		release("Zeta", "2.0.0", "cc", 2*time.Minute),
		release("alpha", "1.0.0", "dd", 3*time.Minute),
	}
	all[4].SignedBy, all[4].Signature, all[4].Manifest = "", "", nil
	update(t, ctx, s, func(tx store.Tx) error {
		_, err := tx.Release("hello", "1.0.0")
		wantErr(t, "Release of an empty store", err, store.ErrNotFound)
		// Withdrawn and Channels are not InsertRelease's to write.
		first := all[1]
		first.Withdrawn, first.Channels = "bad", []string{"production"}
		if err := tx.InsertRelease(first); err != nil {
			return err
		}
		got, err := tx.Release("hello", "1.0.0")
		if err != nil {
			return err
		}
		checkRelease(t, got, hello)
		again := hello
		again.SHA256 = "ff"
		wantErr(t, "the same release again", tx.InsertRelease(again), store.ErrExists)
		for _, r := range append(all[:1:1], all[2:]...) {
			if err := tx.InsertRelease(r); err != nil {
				return err
			}
		}
		return nil
	})

	got, err := s.Release(ctx, "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	checkRelease(t, got, hello)
	_, err = s.Release(ctx, "hello", "9.9.9")
	wantErr(t, "Release of an unknown version", err, store.ErrNotFound)

	// By app in byte order, then push time, then version.
	order := []int{3, 4, 0, 1, 2}
	list, err := s.Releases(ctx, "")
	if err != nil || len(list) != len(all) {
		t.Fatalf("Releases = %+v, %v", list, err)
	}
	for i, j := range order {
		checkRelease(t, list[i], all[j])
	}
	list, err = s.Releases(ctx, "hello")
	if err != nil || len(list) != 3 {
		t.Fatalf("Releases(hello) = %+v, %v", list, err)
	}
	for i, j := range order[2:] {
		checkRelease(t, list[i], all[j])
	}
	if list, err := s.Releases(ctx, "other"); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("Releases(other) = %#v, %v; want an empty list", list, err)
	}
	refs, err := s.ReferencedBlobs(ctx)
	if err != nil || !reflect.DeepEqual(refs, map[string]bool{"aa": true, "bb": true, "cc": true, "dd": true}) {
		t.Fatalf("ReferencedBlobs = %v, %v", refs, err)
	}
}

func testTxChannels(t *testing.T, s store.Store) {
	ctx := context.Background()
	t1, t2 := t0.Add(time.Hour).In(cest), t0.Add(2*time.Hour)
	unsigned := func(app string) api.Release {
		r := release(app, "1.0.0", app, 0)
		r.SignedBy, r.Signature = "", ""
		return r
	}
	insertReleases(t, s, release("hello", "1.0.0", "aa", 0), unsigned("alpha"), unsigned("Zeta"))
	names := func(chans []api.Channel) string {
		var out []string
		for i, c := range chans {
			if i > 0 && c.Position <= chans[i-1].Position {
				t.Fatalf("channel %s at position %d after %s at %d", c.Name, c.Position, chans[i-1].Name, chans[i-1].Position)
			}
			out = append(out, c.Name)
		}
		return fmt.Sprint(out)
	}
	update(t, ctx, s, func(tx store.Tx) error {
		chans, err := tx.Channels()
		if err != nil || names(chans) != "[unstable preview production]" {
			t.Fatalf("Channels of a new store = %+v, %v", chans, err)
		}
		if err := tx.InsertChannel("canary", "preview", true, t0); err != nil {
			return err
		}
		if err := tx.InsertChannel("last", "production", false, t0); err != nil {
			return err
		}
		wantErr(t, "a channel after an unknown one", tx.InsertChannel("x", "nope", false, t0), store.ErrNotFound)
		wantErr(t, "a channel name again", tx.InsertChannel("canary", "unstable", false, t0), store.ErrExists)
		if err := tx.SetAllowUnsigned("unstable", true); err != nil {
			return err
		}
		wantErr(t, "SetAllowUnsigned of an unknown channel", tx.SetAllowUnsigned("nope", true), store.ErrNotFound)
		chans, err = tx.Channels()
		if err != nil || names(chans) != "[unstable preview canary production last]" {
			t.Fatalf("Channels = %+v, %v", chans, err)
		}
		for i, allow := range []bool{true, false, true, false, false} {
			if chans[i].AllowUnsigned != allow {
				t.Fatalf("channel %s allows unsigned releases: %v", chans[i].Name, chans[i].AllowUnsigned)
			}
		}

		for _, add := range []struct {
			channel, app, action, reason string
			at                           time.Time
		}{
			{"unstable", "hello", "pushed", "", t0},
			{"unstable", "Zeta", "pushed", "", t0},
			{"unstable", "alpha", "pushed", "", t0},
			{"production", "hello", "forced", "hotfix", t1},
			{"canary", "hello", "promoted", "", t2},
		} {
			if err := tx.AddToChannel(add.channel, add.app, "1.0.0", add.action, add.reason, add.at); err != nil {
				return err
			}
		}
		wantErr(t, "AddToChannel of a release already there", tx.AddToChannel("unstable", "hello", "1.0.0", "pushed", "", t0), store.ErrExists)
		wantErr(t, "AddToChannel of an unknown channel", tx.AddToChannel("nope", "hello", "1.0.0", "promoted", "", t0), store.ErrNotFound)
		wantErr(t, "AddToChannel of an unknown release", tx.AddToChannel("preview", "hello", "9.9.9", "promoted", "", t0), store.ErrNotFound)

		// In byte order, capitals first.
		if got, err := tx.Unsigned("unstable"); err != nil || fmt.Sprint(got) != "[Zeta@1.0.0 alpha@1.0.0]" {
			t.Fatalf("Unsigned(unstable) = %v, %v", got, err)
		}
		if got, err := tx.Unsigned("production"); err != nil || len(got) != 0 {
			t.Fatalf("Unsigned(production) = %v, %v", got, err)
		}
		// In promotion order, not the order it entered them.
		if r, err := tx.Release("hello", "1.0.0"); err != nil || fmt.Sprint(r.Channels) != "[unstable canary production]" {
			t.Fatalf("Release in the transaction = %+v, %v", r, err)
		}
		return nil
	})

	if r, err := s.Release(ctx, "hello", "1.0.0"); err != nil || fmt.Sprint(r.Channels) != "[unstable canary production]" {
		t.Fatalf("Release = %+v, %v", r, err)
	}
	chans, err := s.Channels(ctx, false)
	if err != nil || names(chans) != "[unstable preview canary production last]" {
		t.Fatalf("Channels = %+v, %v", chans, err)
	}
	wantReleases := []string{"[Zeta@1.0.0 alpha@1.0.0 hello@1.0.0]", "[]", "[hello@1.0.0]", "[hello@1.0.0]", "[]"}
	for i, c := range chans {
		if c.Releases == nil || c.Candidates == nil || c.History != nil || fmt.Sprint(c.Releases) != wantReleases[i] {
			t.Fatalf("channel %s without history = %#v; want releases %s, no candidates and no history", c.Name, c, wantReleases[i])
		}
		if c.AllowUnsigned != (c.Name == "unstable" || c.Name == "canary") {
			t.Fatalf("channel %s allows unsigned releases: %v", c.Name, c.AllowUnsigned)
		}
	}
	chans, err = s.Channels(ctx, true)
	if err != nil || names(chans) != "[unstable preview canary production last]" {
		t.Fatalf("Channels with history = %+v, %v", chans, err)
	}
	wantHistory := [][]api.ChannelChange{
		{{Release: "hello@1.0.0", Action: "pushed", Time: t0}, {Release: "Zeta@1.0.0", Action: "pushed", Time: t0}, {Release: "alpha@1.0.0", Action: "pushed", Time: t0}},
		nil,
		{{Release: "hello@1.0.0", Action: "promoted", Time: t2}},
		{{Release: "hello@1.0.0", Action: "forced", Reason: "hotfix", Time: t1}},
		nil,
	}
	for i, c := range chans {
		if fmt.Sprint(c.Releases) != wantReleases[i] || len(c.History) != len(wantHistory[i]) {
			t.Fatalf("channel %s = %+v; want releases %s and history %+v", c.Name, c, wantReleases[i], wantHistory[i])
		}
		for j, h := range c.History {
			w := wantHistory[i][j]
			if h.Release != w.Release || h.Action != w.Action || h.Reason != w.Reason || !h.Time.Equal(w.Time) || h.Time.Location() != time.UTC {
				t.Fatalf("channel %s history %d = %+v, want %+v in UTC", c.Name, j, h, w)
			}
		}
	}
}

func testTxWithdraw(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		enroll(t, s, "ams", n)
	}
	insertReleases(t, s, release("hello", "1.0.0", "aa", 0), release("hello", "2.0.0", "bb", time.Minute))
	update(t, ctx, s, func(tx store.Tx) error {
		for _, add := range [][2]string{{"unstable", "1.0.0"}, {"preview", "1.0.0"}, {"unstable", "2.0.0"}} {
			if err := tx.AddToChannel(add[0], "hello", add[1], "pushed", "", t0); err != nil {
				return err
			}
		}
		if _, err := tx.AssignNodes([]string{"n1", "n2", "n3"}, "hello", "1.0.0", "", t0); err != nil {
			return err
		}
		_, err := tx.AssignNodes([]string{"n4"}, "hello", "2.0.0", "", t0)
		return err
	})
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.SetNodeStatus("n3", api.StatusRevoked) }); err != nil {
		t.Fatal(err)
	}
	before := generations(t, s, "n1", "n2", "n3", "n4")

	at := t0.Add(time.Hour).In(cest)
	update(t, ctx, s, func(tx store.Tx) error {
		_, _, err := tx.WithdrawRelease("hello", "9.9.9", "bad", at)
		wantErr(t, "WithdrawRelease of an unknown release", err, store.ErrNotFound)
		channels, nodes, err := tx.WithdrawRelease("hello", "1.0.0", "crashes on start", at)
		if err != nil || fmt.Sprint(channels) != "[preview unstable]" || sorted(nodes) != "[n1 n2]" {
			t.Fatalf("WithdrawRelease = %v, %v, %v; want [preview unstable] and the nodes that are not revoked, n1 and n2", channels, nodes, err)
		}
		r, err := tx.Release("hello", "1.0.0")
		if err != nil || r.Withdrawn != "crashes on start" || len(r.Channels) != 0 {
			t.Fatalf("withdrawn release in the transaction = %+v, %v", r, err)
		}
		return nil
	})

	checkGenerations(t, s, before, map[string]int64{"n1": 1, "n2": 1})
	if n, err := s.Node(ctx, "n1"); err != nil || len(n.Assigned) != 1 || n.Assigned[0].Withdrawn != "crashes on start" {
		t.Fatalf("node of a withdrawn release = %+v, %v", n, err)
	}
	if n, err := s.Node(ctx, "n4"); err != nil || len(n.Assigned) != 1 || n.Assigned[0].Withdrawn != "" {
		t.Fatalf("node of another release = %+v, %v", n, err)
	}
	r, err := s.Release(ctx, "hello", "1.0.0")
	if err != nil || r.Withdrawn != "crashes on start" || r.Channels == nil || len(r.Channels) != 0 {
		t.Fatalf("withdrawn release = %#v, %v", r, err)
	}
	if r, err := s.Release(ctx, "hello", "2.0.0"); err != nil || r.Withdrawn != "" || fmt.Sprint(r.Channels) != "[unstable]" {
		t.Fatalf("other release = %+v, %v", r, err)
	}
	chans, err := s.Channels(ctx, true)
	if err != nil || len(chans) != 3 {
		t.Fatalf("Channels = %+v, %v", chans, err)
	}
	for _, c := range chans {
		want := map[string]string{"unstable": "[hello@2.0.0]"}[c.Name]
		if want == "" {
			want = "[]"
		}
		if fmt.Sprint(c.Releases) != want {
			t.Fatalf("channel %s holds %v after the withdrawal, want %s", c.Name, c.Releases, want)
		}
		if c.Name == "production" {
			if len(c.History) != 0 {
				t.Fatalf("production, which never held the release, has history %+v", c.History)
			}
			continue
		}
		last := c.History[len(c.History)-1]
		if last.Release != "hello@1.0.0" || last.Action != "withdrawn" || last.Reason != "crashes on start" || !last.Time.Equal(at) {
			t.Fatalf("channel %s: last history entry %+v, want the withdrawal", c.Name, last)
		}
	}
}

func testTxAssignNodes(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	for _, n := range []string{"n1", "n2", "n3"} {
		enroll(t, s, "ams", n)
	}
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.SetNodeStatus("n3", api.StatusRevoked) }); err != nil {
		t.Fatal(err)
	}
	insertReleases(t, s, release("hello", "1.0.0", "aa", 0), release("hello", "2.0.0", "bb", 0), release("other", "1.0.0", "cc", 0))
	assign := func(names []string, app, version string) []string {
		t.Helper()
		var changed []string
		update(t, ctx, s, func(tx store.Tx) error {
			var err error
			changed, err = tx.AssignNodes(names, app, version, "", t0)
			return err
		})
		return changed
	}
	check := func(name string, want ...api.Assignment) {
		t.Helper()
		n, err := s.Node(ctx, name)
		if err != nil || !reflect.DeepEqual(n.Assigned, append([]api.Assignment{}, want...)) {
			t.Fatalf("%s assigned %+v, %v; want %+v", name, n.Assigned, err, want)
		}
	}
	hello1 := api.Assignment{App: "hello", Version: "1.0.0", SHA256: "aa", Size: 7, Signature: "sig-aa"}
	hello2 := api.Assignment{App: "hello", Version: "2.0.0", SHA256: "bb", Size: 7, Signature: "sig-bb"}
	other := api.Assignment{App: "other", Version: "1.0.0", SHA256: "cc", Size: 7, Signature: "sig-cc"}

	// The scale of a fleet: ten thousand names, most of them unknown.
	names := []string{"n1", "n2", "n3", "ghost"}
	for i := 0; i < 10000; i++ {
		names = append(names, fmt.Sprintf("ghost-%05d", i))
	}
	before := generations(t, s, "n1", "n2", "n3")
	if changed := assign(names, "hello", "1.0.0"); sorted(changed) != "[n1 n2]" {
		t.Fatalf("AssignNodes changed %v, want the nodes that are not revoked, n1 and n2", changed)
	}
	checkGenerations(t, s, before, map[string]int64{"n1": 1, "n2": 1})
	check("n1", hello1)
	check("n3")
	if changed := assign(names, "hello", "1.0.0"); len(changed) != 0 {
		t.Fatalf("the same assignment again changed %v", changed)
	}
	checkGenerations(t, s, before, map[string]int64{"n1": 1, "n2": 1})

	if changed := assign([]string{"n1", "n1"}, "hello", "2.0.0"); fmt.Sprint(changed) != "[n1]" {
		t.Fatalf("AssignNodes of n1, named twice, changed %v", changed)
	}
	if changed := assign([]string{"n2"}, "other", "1.0.0"); fmt.Sprint(changed) != "[n2]" {
		t.Fatalf("AssignNodes of another app changed %v", changed)
	}
	checkGenerations(t, s, before, map[string]int64{"n1": 2, "n2": 2})
	check("n1", hello2)
	check("n2", hello1, other)

	update(t, ctx, s, func(tx store.Tx) error {
		changed, err := tx.AssignNodes([]string{"n1"}, "hello", "9.9.9", "", t0)
		wantErr(t, "AssignNodes of an unknown release", err, store.ErrNotFound)
		if len(changed) != 0 {
			t.Fatalf("AssignNodes of an unknown release changed %v", changed)
		}
		if changed, err := tx.AssignNodes(nil, "hello", "1.0.0", "", t0); err != nil || len(changed) != 0 {
			t.Fatalf("AssignNodes of no node = %v, %v", changed, err)
		}
		return nil
	})
	checkGenerations(t, s, before, map[string]int64{"n1": 2, "n2": 2})
}

// A node follows a channel for an app: the assignment names the channel, MoveFollowers moves
// the followers of that channel (and no one else) to another version with new generations, and
// UnassignNodes drops the app.
func testTxFollow(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	for _, n := range []string{"n1", "n2", "n3"} {
		enroll(t, s, "ams", n)
	}
	insertReleases(t, s, release("hello", "1.0.0", "aa", 0), release("hello", "2.0.0", "bb", 0))
	var moved, dropped []string
	update(t, ctx, s, func(tx store.Tx) error {
		for _, add := range [][2]string{{"unstable", "1.0.0"}, {"preview", "1.0.0"}, {"unstable", "2.0.0"}} {
			if err := tx.AddToChannel(add[0], "hello", add[1], "pushed", "", t0); err != nil {
				return err
			}
		}
		if vs, err := tx.ChannelVersions("unstable", "hello"); err != nil || sorted(vs) != "[1.0.0 2.0.0]" {
			t.Fatalf("ChannelVersions = %v, %v", vs, err)
		}
		if vs, err := tx.ChannelVersions("production", "hello"); err != nil || len(vs) != 0 {
			t.Fatalf("ChannelVersions of an empty channel = %v, %v", vs, err)
		}
		if _, err := tx.AssignNodes([]string{"n1", "n2"}, "hello", "1.0.0", "preview", t0); err != nil {
			return err
		}
		// A pin of the version n1 follows is a change: n1 no longer follows.
		if changed, err := tx.AssignNodes([]string{"n1"}, "hello", "1.0.0", "", t0); err != nil || fmt.Sprint(changed) != "[n1]" {
			t.Fatalf("pinning a follower changed %v, %v", changed, err)
		}
		_, err := tx.AssignNodes([]string{"n3"}, "hello", "1.0.0", "unstable", t0)
		return err
	})
	before := generations(t, s, "n1", "n2", "n3")
	update(t, ctx, s, func(tx store.Tx) error {
		var err error
		if moved, err = tx.MoveFollowers("hello", "preview", "2.0.0", t0); err != nil {
			return err
		}
		if again, err := tx.MoveFollowers("hello", "preview", "2.0.0", t0); err != nil || len(again) != 0 {
			t.Fatalf("moving followers again changed %v, %v", again, err)
		}
		return nil
	})
	if fmt.Sprint(moved) != "[n2]" {
		t.Fatalf("MoveFollowers moved %v, want the one node that follows preview", moved)
	}
	checkGenerations(t, s, before, map[string]int64{"n2": 1})
	n2, err := s.Node(ctx, "n2")
	if err != nil || len(n2.Assigned) != 1 || n2.Assigned[0].Version != "2.0.0" || n2.Assigned[0].Channel != "preview" {
		t.Fatalf("n2 after the move: %+v %v", n2.Assigned, err)
	}
	if n1, err := s.Node(ctx, "n1"); err != nil || n1.Assigned[0].Version != "1.0.0" || n1.Assigned[0].Channel != "" {
		t.Fatalf("the pinned node moved: %+v %v", n1.Assigned, err)
	}
	update(t, ctx, s, func(tx store.Tx) error {
		var err error
		dropped, err = tx.UnassignNodes([]string{"n1", "n3", "ghost"}, "hello")
		return err
	})
	if sorted(dropped) != "[n1 n3]" {
		t.Fatalf("UnassignNodes dropped %v", dropped)
	}
	checkGenerations(t, s, before, map[string]int64{"n1": 1, "n2": 1, "n3": 1})
	if n3, err := s.Node(ctx, "n3"); err != nil || len(n3.Assigned) != 0 {
		t.Fatalf("n3 after UnassignNodes: %+v %v", n3.Assigned, err)
	}
}

// ControlApp stops, starts and restarts an app on the nodes that have it assigned, changing
// (and giving a new generation to) only the nodes whose assignment it changed.
func testTxControlApp(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	for _, n := range []string{"n1", "n2", "n3"} {
		enroll(t, s, "ams", n)
	}
	insertReleases(t, s, release("hello", "1.0.0", "aa", 0))
	update(t, ctx, s, func(tx store.Tx) error {
		_, err := tx.AssignNodes([]string{"n1", "n2"}, "hello", "1.0.0", "", t0)
		return err
	})
	control := func(action string, names ...string) string {
		t.Helper()
		var changed []string
		update(t, ctx, s, func(tx store.Tx) error {
			var err error
			changed, err = tx.ControlApp(names, "hello", action)
			return err
		})
		return sorted(changed)
	}
	state := func(name string) (bool, int64) {
		t.Helper()
		n, err := s.Node(ctx, name)
		if err != nil || len(n.Assigned) != 1 {
			t.Fatalf("%s assigned %+v, %v", name, n.Assigned, err)
		}
		return n.Assigned[0].Stopped, n.Assigned[0].Restarts
	}
	before := generations(t, s, "n1", "n2", "n3")
	if got := control(api.AppStop, "n1", "n3"); got != "[n1]" {
		t.Fatalf("stop changed %s, want n1 (n3 has no hello)", got)
	}
	if got := control(api.AppStop, "n1"); got != "[]" {
		t.Fatalf("stopping a stopped app changed %s", got)
	}
	if stopped, _ := state("n1"); !stopped {
		t.Fatal("n1 is not stopped")
	}
	if got := control(api.AppRestart, "n1", "n2"); got != "[n1 n2]" {
		t.Fatalf("restart changed %s", got)
	}
	if got := control(api.AppStart, "n1", "n2"); got != "[n1]" {
		t.Fatalf("start changed %s, want the stopped n1", got)
	}
	if stopped, restarts := state("n1"); stopped || restarts != 1 {
		t.Fatalf("n1 after stop, restart, start: stopped %v, restarts %d", stopped, restarts)
	}
	checkGenerations(t, s, before, map[string]int64{"n1": 3, "n2": 1})
	update(t, ctx, s, func(tx store.Tx) error {
		_, err := tx.ControlApp([]string{"n1"}, "hello", "pause")
		wantErr(t, "ControlApp with an unknown action", err, store.ErrNotFound)
		return nil
	})
}

func testTxNodeApps(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	enroll(t, s, "ams", "n2")
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.SetNodeStatus("n2", api.StatusRevoked) }); err != nil {
		t.Fatal(err)
	}
	installed := t0.Add(time.Minute).In(cest)
	apps := []api.NodeApp{
		{App: "hello", Version: "1.0.0", SHA256: "aa", InstalledAt: &installed, State: api.AppStateRunning,
			Processes: []api.ProcessState{{Name: "web", State: "running", PID: 42, Restarts: 1}}, Ports: map[string]int{"http": 31000}},
		{App: "other", Pending: "2.0.0", Error: "signature does not verify", Retry: true, State: api.AppStateRolledBack, LogTail: "panic: boom\n"},
	}
	checkApps := func(what string, got []api.NodeApp) {
		t.Helper()
		// The instant only: SQLite's Node keeps the zone the agent reported in.
		if len(got) != 2 || got[0].InstalledAt == nil || !got[0].InstalledAt.Equal(installed) {
			t.Fatalf("%s = %+v; want %+v", what, got, apps)
		}
		a, b := got[0], apps[0]
		a.InstalledAt, b.InstalledAt = nil, nil
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(got[1], apps[1]) {
			t.Fatalf("%s = %+v; want %+v", what, got, apps)
		}
	}
	update(t, ctx, s, func(tx store.Tx) error {
		if got, err := tx.NodeApps("n1"); err != nil || len(got) != 0 {
			t.Fatalf("NodeApps of a new node = %+v, %v", got, err)
		}
		_, err := tx.NodeApps("ghost")
		wantErr(t, "NodeApps of an unknown node", err, store.ErrNotFound)
		_, err = tx.NodeApps("n2")
		wantErr(t, "NodeApps of a revoked node", err, store.ErrNotFound)
		wantErr(t, "SetNodeApps of an unknown node", tx.SetNodeApps("ghost", apps), store.ErrNotFound)
		if err := tx.SetNodeApps("n1", apps); err != nil {
			return err
		}
		got, err := tx.NodeApps("n1")
		if err != nil {
			return err
		}
		checkApps("NodeApps in the transaction", got)
		return nil
	})
	n, err := s.Node(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	checkApps("the node's apps", n.Apps)
	update(t, ctx, s, func(tx store.Tx) error {
		if err := tx.SetNodeApps("n1", nil); err != nil {
			return err
		}
		if got, err := tx.NodeApps("n1"); err != nil || len(got) != 0 {
			t.Fatalf("NodeApps after none were set = %+v, %v", got, err)
		}
		return nil
	})
	if n, err := s.Node(ctx, "n1"); err != nil || n.Apps == nil || len(n.Apps) != 0 {
		t.Fatalf("the node's apps after none were set = %#v, %v", n.Apps, err)
	}
}

func testTxAppendEvents(t *testing.T, s store.Store) {
	admin := store.Actor{ID: "token:abc", Role: "admin", Source: "127.0.0.1:5555"}
	ctx := store.WithActor(context.Background(), admin)
	last, err := s.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute).In(cest)
	in := []api.Event{
		{Time: at, Type: "test", Subject: "a", Actor: "token:forged", Role: "admin", Source: "1.2.3.4:5"},
		api.NewEvent(at, api.EventReleaseWithdrawn, "hello@1.0.0", api.ReleaseWithdrawn{Reason: "bad", Channels: []string{"unstable"}}),
		{Time: t0, Type: "test", Subject: "c"},
	}
	var out []api.Event
	update(t, ctx, s, func(tx store.Tx) error {
		if evs, err := tx.AppendEvents(); err != nil || len(evs) != 0 {
			t.Fatalf("AppendEvents of none = %+v, %v", evs, err)
		}
		evs, err := tx.AppendEvents(in...)
		if err != nil {
			return err
		}
		more, err := tx.AppendEvents(api.NewEvent(t0, "test", "d", nil))
		out = append(evs, more...)
		return err
	})
	var system []api.Event
	update(t, context.Background(), s, func(tx store.Tx) error {
		var err error
		system, err = tx.AppendEvents(api.NewEvent(t0, "test", "e", nil))
		return err
	})

	if len(out) != 4 || len(system) != 1 {
		t.Fatalf("AppendEvents returned %+v and %+v, want 4 events and 1", out, system)
	}
	for i, e := range append(out, system...) {
		want := admin
		if i == len(out) {
			want = store.System
		}
		if subject := []string{"a", "hello@1.0.0", "c", "d", "e"}[i]; e.Subject != subject {
			t.Fatalf("event %d returned is %+v, want the one of %s", i, e, subject)
		}
		if e.ID <= last {
			t.Fatalf("event %s has id %d, not after %d", e.Subject, e.ID, last)
		}
		last = e.ID
		if e.Actor != want.ID || e.Role != want.Role || e.Source != want.Source {
			t.Fatalf("event %s: actor %q role %q source %q, want %+v", e.Subject, e.Actor, e.Role, e.Source, want)
		}
		if e.Time.Location() != time.UTC {
			t.Fatalf("event %s at %s, want UTC", e.Subject, e.Time)
		}
	}
	if string(out[1].Data) != string(in[1].Data) || !out[0].Time.Equal(at) {
		t.Fatalf("events returned as %+v", out)
	}

	// The log holds what AppendEvents returned.
	logged, err := s.Events(ctx, out[0].ID-1, 100)
	if err != nil || len(logged) != 5 {
		t.Fatalf("Events = %+v, %v; want the 5 appended", logged, err)
	}
	for i, e := range append(out, system...) {
		l := logged[i]
		if l.ID != e.ID || l.Type != e.Type || l.Subject != e.Subject || !l.Time.Equal(e.Time) || string(l.Data) != string(e.Data) ||
			l.Actor != e.Actor || l.Role != e.Role || l.Source != e.Source {
			t.Fatalf("logged %+v, returned %+v", l, e)
		}
	}
	if logged[0].Data != nil || logged[1].Fields()["reason"] != "bad" {
		t.Fatalf("event data logged as %q and %q", logged[0].Data, logged[1].Data)
	}
}

// An Update whose fn fails writes nothing, and returns fn's error as it is.
func testTxRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	addSite(t, s, "ams", 1)
	enroll(t, s, "ams", "n1")
	last, err := s.LastEventID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := generations(t, s, "n1")
	chansBefore, err := s.Channels(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = updater(t, s).Update(ctx, func(tx store.Tx) error {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(tx.InsertKey(api.SigningKey{ID: "0123456789ABCDEF", PublicKey: "RWQ-key", CreatedAt: t0}))
		must(tx.InsertRelease(release("hello", "1.0.0", "aa", 0)))
		must(tx.AddToChannel("unstable", "hello", "1.0.0", "pushed", "", t0))
		must(tx.InsertChannel("canary", "preview", false, t0))
		must(tx.SetAllowUnsigned("production", true))
		_, err := tx.AssignNodes([]string{"n1"}, "hello", "1.0.0", "", t0)
		must(err)
		must(tx.SetNodeApps("n1", []api.NodeApp{{App: "hello", Version: "1.0.0", SHA256: "aa"}}))
		_, err = tx.AppendEvents(api.NewEvent(t0, "test", "a", nil), api.NewEvent(t0, "test", "b", nil))
		must(err)
		return boom
	})
	if err != boom {
		t.Fatalf("Update returned %v, want fn's error as it is", err)
	}
	err = updater(t, s).Update(ctx, func(tx store.Tx) error {
		_, err := tx.Release("hello", "1.0.0")
		return err
	})
	wantErr(t, "Update returning a Tx error", err, store.ErrNotFound)

	if keys, err := s.Keys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("Keys after a rollback = %+v, %v", keys, err)
	}
	if list, err := s.Releases(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("Releases after a rollback = %+v, %v", list, err)
	}
	if chans, err := s.Channels(ctx, true); err != nil || !reflect.DeepEqual(chans, chansBefore) {
		t.Fatalf("Channels after a rollback = %+v, %v; want %+v", chans, err, chansBefore)
	}
	checkGenerations(t, s, before, nil)
	if n, err := s.Node(ctx, "n1"); err != nil || len(n.Assigned) != 0 || len(n.Apps) != 0 {
		t.Fatalf("node after a rollback = %+v, %v", n, err)
	}
	if id, err := s.LastEventID(ctx); err != nil || id != last {
		t.Fatalf("last event %d after a rollback, %v; want %d", id, err, last)
	}
	// The next Update commits as usual.
	update(t, ctx, s, func(tx store.Tx) error {
		_, err := tx.AppendEvents(api.NewEvent(t0, "test", "after", nil))
		return err
	})
	if evs, err := s.Events(ctx, last, 10); err != nil || len(evs) != 1 || evs[0].Subject != "after" {
		t.Fatalf("events after a rollback = %+v, %v", evs, err)
	}
}
