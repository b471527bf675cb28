package server

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
)

// cluster is the configuration replicas share: one database, one cluster key file and one blob
// directory, under root.
func cluster(root string) Config {
	return Config{DB: "sqlite:" + filepath.Join(root, "ferry.db"), ClusterKey: filepath.Join(root, "cluster.key"),
		BlobsDir: filepath.Join(root, "blobs")}
}

// replica is the configuration of one replica of c, with a data directory of its own under root
// and its log going to log.
func replica(c Config, root, name string, log io.Writer) Config {
	c.DataDir = filepath.Join(root, name)
	c.Logger = slog.New(slog.NewTextHandler(log, nil))
	return c
}

// openSession answers a challenge of c for node with its key.
func openSession(t *testing.T, c *client.Client, node string, key ed25519.PrivateKey) api.Session {
	t.Helper()
	ch, err := c.Challenge(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(key, api.SessionMessage(node, ch.Nonce)))
	s, err := c.Session(context.Background(), api.SessionRequest{Node: node, Nonce: ch.Nonce, Signature: sig})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Two replicas over one database, with data directories of their own and one cluster key, are
// one server to agents and operators: the same CA (pin and ca.pem), sessions and tokens that one
// made work on the other, and an agent pinned at enrollment trusts both. The second writes no
// admin token of its own and says where to copy it from. (SQLite serves one replica at a time,
// so they take turns; PostgreSQL's PutSecret is raced in the store suite.)
func TestReplicasShareIdentity(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	c := cluster(root)
	a := start(t, replica(c, root, "a", io.Discard))
	a.site("ams", 1)
	ac := a.client("")
	req, priv := signed(t, a.enrollToken("ams", 1), "n1")
	if _, err := ac.Enroll(ctx, req); err != nil {
		t.Fatal(err)
	}
	answer := func(ch api.Challenge) api.SessionRequest {
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, api.SessionMessage("n1", ch.Nonce)))
		return api.SessionRequest{Node: "n1", Nonce: ch.Nonce, Signature: sig}
	}
	ch, err := ac.Challenge(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ac.Session(ctx, answer(ch))
	if err != nil {
		t.Fatal(err)
	}
	if ch, err = ac.Challenge(ctx, "n1"); err != nil { // answered on b
		t.Fatal(err)
	}
	viewer, err := a.admin.CreateToken(ctx, api.TokenCreate{Role: api.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	n2, stopN2 := a.runAgent("n2", a.enrollToken("ams", 1), agentDir)
	waitGeneration(t, n2, 1)
	stopN2()
	lateToken := a.enrollToken("ams", 1)
	a.stop()

	var logB lockedBuffer
	b := start(t, replica(c, root, "b", &logB))
	if b.srv.CAPin != a.srv.CAPin || b.srv.CAPin == "" {
		t.Fatalf("replica b pins %q, a %q", b.srv.CAPin, a.srv.CAPin)
	}
	if b.srv.CAFile != filepath.Join(root, "b", "tls", "ca.pem") || readFile(t, b.srv.CAFile) != readFile(t, a.srv.CAFile) {
		t.Fatalf("replica b's ca.pem (%s) is not replica a's", b.srv.CAFile)
	}

	// One admin token for the cluster: b writes none and says where it is.
	if _, err := os.Stat(filepath.Join(root, "b", "admin.token")); !os.IsNotExist(err) || b.srv.AdminToken != "" {
		t.Fatalf("replica b made an admin token of its own (%v)", err)
	}
	if got := logB.String(); strings.Count(got, "copy that file here") != 1 {
		t.Fatalf("replica b's log does not say to copy admin.token:\n%s", got)
	}

	// Operators: a's admin and viewer tokens, trusting a's ca.pem, work on b.
	for _, tok := range []string{a.srv.AdminToken, viewer.Secret} {
		op, err := client.New(b.addr, tok)
		if err != nil {
			t.Fatal(err)
		}
		if err := op.UseTLS(pki.ClientOptions{CAFile: a.srv.CAFile}); err != nil {
			t.Fatal(err)
		}
		if _, err := op.Nodes(ctx, client.NodeQuery{}); err != nil {
			t.Fatalf("a token made through replica a, on b: %v", err)
		}
	}
	b.admin = b.client(a.srv.AdminToken)

	// Agents: a session and a challenge that a signed work on b.
	bc := b.client("")
	if _, err := syncOnce(bc, sess.Token, api.Sync{}); err != nil {
		t.Fatalf("a session replica a opened, on b: %v", err)
	}
	sess, err = bc.Session(ctx, answer(ch))
	if err != nil {
		t.Fatalf("a challenge replica a issued, answered on b: %v", err)
	}
	if _, err := syncOnce(bc, sess.Token, api.Sync{}); err != nil {
		t.Fatalf("a session replica b opened: %v", err)
	}

	// An agent enrolled through a, and one enrolling through b with a token made through a,
	// trust b by the pin their token carried.
	n2, _ = b.runAgent("n2", "", agentDir)
	n3, _ := b.runAgent("n3", lateToken, "")
	for _, n := range []string{"n2", "n3"} {
		if _, err := b.admin.Label(ctx, n, api.LabelChange{Set: map[string]string{"replica": "b"}}); err != nil {
			t.Fatal(err)
		}
	}
	waitGeneration(t, n2, 2)
	if d := waitGeneration(t, n3, 2); d.Labels["replica"] != "b" {
		t.Fatalf("n3's desired state: %+v", d)
	}
}

// A replica whose cluster key does not open the database's secrets refuses to start, in one line
// that names its key file and says what to do; one with no key at all makes none (it would only
// be another cluster's) and says to copy it; with the first replica's key copied, it starts.
func TestOtherClusterKeyRefused(t *testing.T) {
	root := t.TempDir()
	c := cluster(root)
	c.ClusterKey = "" // each replica's own DATA/cluster.key
	start(t, replica(c, root, "a", io.Discard)).stop()

	b := replica(c, root, "b", io.Discard)
	_, err := New(context.Background(), b)
	file := filepath.Join(root, "b", "cluster.key")
	want := "no cluster key at " + file + ", and the database belongs to a cluster already: copy the first replica's cluster key there (mode 0600), or point --cluster-key at it"
	if err == nil || err.Error() != want {
		t.Fatalf("start without a cluster key: %v\nwant: %s", err, want)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused start left a cluster key: %v", err)
	}
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(context.Background(), b)
	want = "cluster key " + file + " does not open the secrets in the database (another cluster key sealed them): copy the first replica's cluster key to " + file
	if err == nil || err.Error() != want {
		t.Fatalf("start with another cluster key: %v\nwant: %s", err, want)
	}
	if err := os.WriteFile(file, []byte(readFile(t, filepath.Join(root, "a", "cluster.key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	h := start(t, b)
	if h.srv.CAPin == "" {
		t.Fatal("no CA pin")
	}
}

// A server from before replicas, whose CA is in DATA/tls and whose database holds none, keeps
// its CA and so its pin: the CA goes into the database, where it stays when DATA/tls is gone, and
// any replica that joins serves with it.
func TestUpgradeKeepsCA(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a")
	old, err := pki.EnsureServerCert(filepath.Join(dir, "tls"), []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := cluster(root)
	var log lockedBuffer
	h := start(t, replica(c, root, "a", &log))
	if h.srv.CAPin != old.CAPin() {
		t.Fatalf("the upgraded server pins %s, before %s", h.srv.CAPin, old.CAPin())
	}
	if !strings.Contains(log.String(), "is now the cluster's") {
		t.Fatalf("the server did not say it took the CA from its data directory:\n%s", log.String())
	}
	h.stop()
	if err := os.RemoveAll(filepath.Join(dir, "tls")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		h := start(t, replica(c, root, name, io.Discard))
		if h.srv.CAPin != old.CAPin() {
			t.Fatalf("replica %s pins %s, the CA from before %s", name, h.srv.CAPin, old.CAPin())
		}
		h.stop()
	}
}

// The README's rotations: deleting the sealed session secret ends every session and keeps the
// CA; deleting the sealed CA, with DATA/tls moved away, makes a new CA.
func TestRotateSharedSecrets(t *testing.T) {
	root := t.TempDir()
	c := cluster(root)
	h := start(t, replica(c, root, "a", io.Discard))
	h.site("ams", 1)
	req, priv := signed(t, h.enrollToken("ams", 1), "n1")
	if _, err := h.client("").Enroll(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	sess := openSession(t, h.client(""), "n1", priv)
	pin := h.srv.CAPin
	h.stop()

	deleteSecret := func(name string) {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(root, "ferry.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if res, err := db.Exec(`DELETE FROM secrets WHERE name = ?`, name); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("no %s secret to delete", name)
		}
	}
	deleteSecret("session")
	h = start(t, replica(c, root, "a", io.Discard))
	ac := h.client("")
	if _, err := syncOnce(ac, sess.Token, api.Sync{}); client.StatusOf(err) != 401 {
		t.Fatalf("a session from before the rotation: %v", err)
	}
	if _, err := syncOnce(ac, openSession(t, ac, "n1", priv).Token, api.Sync{}); err != nil {
		t.Fatalf("a new session: %v", err)
	}
	if h.srv.CAPin != pin {
		t.Fatal("rotating the session secret changed the CA")
	}
	h.stop()

	deleteSecret("ca")
	if err := os.Rename(filepath.Join(root, "a", "tls"), filepath.Join(root, "old-tls")); err != nil {
		t.Fatal(err)
	}
	h = start(t, replica(c, root, "a", io.Discard))
	if h.srv.CAPin == pin || h.srv.CAPin == "" {
		t.Fatalf("the CA was not rotated: pin %q", h.srv.CAPin)
	}
}

// A server whose only admin.token is lost makes none by itself (the database holds one), and a
// new one, which works, when started with NewAdminToken.
func TestNewAdminToken(t *testing.T) {
	root := t.TempDir()
	c := cluster(root)
	a := start(t, replica(c, root, "a", io.Discard))
	old := a.srv.AdminToken
	a.stop()
	if err := os.Remove(filepath.Join(root, "a", "admin.token")); err != nil {
		t.Fatal(err)
	}
	b := start(t, replica(c, root, "a", io.Discard))
	if b.srv.AdminToken != "" {
		t.Fatal("a server made an admin token while the database holds one")
	}
	b.stop()
	cfg := replica(c, root, "a", io.Discard)
	cfg.NewAdminToken = true
	d := start(t, cfg)
	tok := strings.TrimSpace(readFile(t, filepath.Join(root, "a", "admin.token")))
	if tok == "" || tok == old || d.srv.AdminToken != tok {
		t.Fatalf("admin.token after NewAdminToken: %q (server holds %q, old %q)", tok, d.srv.AdminToken, old)
	}
	if _, err := d.client(tok).Sites(context.Background()); err != nil {
		t.Fatalf("the new admin token: %v", err)
	}
}
