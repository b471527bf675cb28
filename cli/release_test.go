package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
)

// The bulletin shows each app's channels in promotion order, not by name, in its table and in
// its JSON.
func TestBulletinPromotionOrder(t *testing.T) {
	f := newFleet(t)
	f.mustFerry("channel", "create", "canary", "--after", "unstable")
	f.push("hello", "1.0.0")
	for _, ch := range []string{"canary", "preview", "production"} {
		f.mustFerry("release", "promote", "hello@1.0.0", "--to", ch)
	}
	f.push("hello", "1.1.0")
	want := "unstable@1.1.0 canary@1.0.0 preview@1.0.0 production@1.0.0"
	out := f.mustFerry("bulletin")
	if !strings.Contains(out, want) {
		t.Fatalf("bulletin does not list %q:\n%s", want, out)
	}
	var b api.Bulletin
	out = f.mustFerry("bulletin", "hello", "-o", "json")
	if err := json.Unmarshal([]byte(out), &b); err != nil || len(b.Apps) != 1 {
		t.Fatalf("bulletin -o json: %v\n%s", err, out)
	}
	var got []string
	for _, c := range b.Apps[0].Candidates {
		got = append(got, c.Channel+"@"+c.Version)
	}
	if strings.Join(got, " ") != want || b.Apps[0].Channels["canary"] != "1.0.0" {
		t.Errorf("bulletin -o json: candidates %v, channels %v; want %s", got, b.Apps[0].Channels, want)
	}
}

// A .minisig made by a trusted key for other bytes is refused before the upload, saying the
// signature does not match the file; one made by a key the server does not trust says so.
// Neither pushes anything.
func TestPushWrongSignature(t *testing.T) {
	f := newFleet(t)
	a, b := f.bundle("hello", "1.0.0"), f.bundle("hello", "2.0.0")
	f.sign(b)
	if err := os.Rename(b+".minisig", a+".minisig"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := f.ferry("release", "push", a)
	if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 ||
		!strings.HasPrefix(errOut, "ferry: "+a+": the signature does not match this file: key ") || strings.Contains(errOut, "trust the signer") {
		t.Errorf("push with another bundle's signature: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	stranger := newFleet(t) // its key is not trusted by f's server
	c := stranger.bundle("hello", "1.0.0")
	stranger.sign(c)
	out, errOut, code = f.ferry("release", "push", c)
	if code != 1 || out != "" || !strings.Contains(errOut, ", which is not trusted; trust its public key with ferry key trust") {
		t.Errorf("push signed by an untrusted key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if rels, err := f.admin.Releases(f.ctx, ""); err != nil || len(rels) != 0 {
		t.Errorf("refused pushes left releases %v (%v)", rels, err)
	}
}

// The bulletin marks a version that runs somewhere but was withdrawn, and says why in JSON.
func TestBulletinMarksWithdrawn(t *testing.T) {
	f := newFleet(t)
	f.agent("ams-01", "ams", nil)
	f.push("hello", "1.0.0")
	f.mustFerry("deploy", "hello@1.0.0", "--all", "--wait")
	if out := f.mustFerry("bulletin"); strings.Contains(out, "withdrawn") {
		t.Fatalf("before the withdrawal:\n%s", out)
	}
	f.mustFerry("release", "withdraw", "hello@1.0.0", "--reason", "leaks memory")
	if out := f.mustFerry("bulletin"); !strings.Contains(out, "ams:1.0.0×1 (withdrawn)") {
		t.Fatalf("bulletin:\n%s", out)
	}
	var b api.Bulletin
	if err := json.Unmarshal([]byte(f.mustFerry("bulletin", "-o", "json")), &b); err != nil || b.Apps[0].Withdrawn["1.0.0"] != "leaks memory" {
		t.Fatalf("bulletin -o json: %+v %v", b, err)
	}
}
