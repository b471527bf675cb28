package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/bundletest"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

type signer struct {
	t   *testing.T
	dir string
}

func newSigner(t *testing.T) signer {
	dir := t.TempDir()
	if _, err := signing.GenerateKeyPair(dir, ""); err != nil {
		t.Fatal(err)
	}
	return signer{t, dir}
}

func (s signer) pub() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, signing.PublicKeyFile))
	return string(b)
}

func (s signer) sign(b []byte) []byte {
	s.t.Helper()
	f := filepath.Join(s.t.TempDir(), "b.tar.gz")
	os.WriteFile(f, b, 0o644)
	priv, err := signing.LoadSecretKey(filepath.Join(s.dir, signing.SecretKeyFile), "")
	if err != nil {
		s.t.Fatal(err)
	}
	out, err := signing.SignFile(priv, f, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	sig, _ := os.ReadFile(out)
	return sig
}

func blobFiles(t *testing.T, h *harness) []string {
	var files []string
	filepath.Walk(filepath.Join(h.srv.cfg.DataDir, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func push(h *harness, b, sig []byte) (api.Release, error) {
	return h.admin.PushRelease(context.Background(), bytes.NewReader(b), int64(len(b)), sig)
}

func TestPushAndServeBlobs(t *testing.T) {
	h := start(t, Config{})
	ctx := context.Background()
	trusted := newSigner(t)
	k, err := h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: trusted.pub(), Comment: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	var payload strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&payload, "%d:%x ", i, i*i*7919)
	}
	b := bundletest.Build(t, "hello", "1.4.0", payload.String())
	if len(b) < 10000 {
		t.Fatalf("bundle only %d bytes", len(b))
	}
	rel, err := push(h, b, trusted.sign(b))
	if err != nil || rel.SignedBy != k.ID || rel.SHA256 != release.Sum(b) || rel.Size != int64(len(b)) || len(rel.Channels) != 1 || rel.Channels[0] != "unstable" {
		t.Fatalf("push: %+v %v", rel, err)
	}
	before := lastEventID(t, h.admin)
	if again, created, err := h.admin.Push(ctx, bytes.NewReader(b), int64(len(b)), trusted.sign(b)); err != nil || created || again.SHA256 != rel.SHA256 {
		t.Fatalf("same bytes twice: %+v created %v, %v", again, created, err)
	}
	if lastEventID(t, h.admin) != before || len(blobFiles(t, h)) != 1 {
		t.Fatal("pushing the same bytes twice made a second release or blob")
	}

	// Range, ETag, If-None-Match; an operator token or an agent session may read blobs.
	get := func(tok string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", h.addr+"/v1/blobs/sha256:"+rel.SHA256, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, body
	}
	resp, body := get(h.srv.AdminToken, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, b) || resp.Header.Get("ETag") != `"sha256:`+rel.SHA256+`"` {
		t.Fatalf("GET blob: %d, %d bytes, etag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}
	// A download interrupted at byte 1000 resumes to the exact bytes.
	resp, body = get(h.srv.AdminToken, map[string]string{"Range": "bytes=1000-"})
	if resp.StatusCode != 206 || !bytes.Equal(append(append([]byte{}, b[:1000]...), body...), b) {
		t.Fatalf("Range: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, _ = get(h.srv.AdminToken, map[string]string{"If-None-Match": `"sha256:` + rel.SHA256 + `"`}); resp.StatusCode != 304 {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}
	if resp, _ = get("", nil); resp.StatusCode != 401 {
		t.Fatalf("blob without a token: %d", resp.StatusCode)
	}
	sess := h.srv.issueSession("ghost", "key") // a session of a node that does not exist
	if resp, _ = get(sess.Token, nil); resp.StatusCode != 401 {
		t.Fatalf("blob with a session of an unknown node: %d", resp.StatusCode)
	}
	h.site("ams", 1)
	a, _ := h.runAgent("n1", h.enrollToken("ams", 1), "")
	waitGeneration(t, a, 1)
	if resp, _ = get(h.srv.issueSession("n1", a.PublicKey()).Token, nil); resp.StatusCode != 200 {
		t.Fatalf("blob with an agent session: %d", resp.StatusCode)
	}
	if resp, _ = get(h.srv.AdminToken, map[string]string{}); resp.StatusCode != 200 {
		t.Fatal("second read failed")
	}
	r2, err := h.admin.Release(ctx, "hello", "1.4.0")
	if err != nil || r2.Manifest["app"] != "hello" || r2.Signature != base64.StdEncoding.EncodeToString(trusted.sign(b)) {
		t.Fatalf("release show: %+v %v", r2, err)
	}
}

func TestPushRefusalsStoreNothing(t *testing.T) {
	h := start(t, Config{MaxBundleSize: 64 << 10})
	ctx := context.Background()
	trusted, stranger := newSigner(t), newSigner(t)
	revoked := newSigner(t)
	h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: trusted.pub()})
	rk, _ := h.admin.TrustKey(ctx, api.KeyTrust{PublicKey: revoked.pub()})
	h.admin.RevokeKey(ctx, rk.ID)
	good := bundletest.Build(t, "hello", "1.4.0", "v1")
	if _, err := push(h, good, trusted.sign(good)); err != nil {
		t.Fatal(err)
	}
	before, blobsBefore := lastEventID(t, h.admin), len(blobFiles(t, h))
	other := bundletest.Build(t, "hello", "1.4.0", "other content")
	next := bundletest.Build(t, "hello", "1.5.0", "v2")
	corrupt := append([]byte(nil), next...)
	corrupt[len(corrupt)/2] ^= 0xff
	noise := make([]byte, 70<<10)
	rand.Read(noise)
	huge := bundletest.Build(t, "hello", "1.6.0", string(noise)) // a well-formed bundle, checked until the limit cuts it off
	cases := []struct {
		name string
		b    []byte
		sig  []byte
		code int
		want string
	}{
		{"other bytes, same version", other, trusted.sign(other), 409, "immutable"},
		{"unsigned", next, nil, 409, "unsigned"},
		{"untrusted key", next, stranger.sign(next), 403, "not trusted; trust the signer"},
		{"revoked key", next, revoked.sign(next), 403, "not trusted; trust the signer"},
		{"signature of other bytes", next, trusted.sign(good), 403, "does not match this file"},
		{"garbage signature", next, []byte("not a signature"), 403, "minisign"},
		{"truncated gzip", next[:len(next)-20], trusted.sign(next[:len(next)-20]), 400, "corrupt"},
		{"corrupt gzip", corrupt, trusted.sign(corrupt), 400, "corrupt"},
		{"not a bundle", []byte("hello"), nil, 400, "gzip"},
		{"over the size limit", huge, nil, 413, "limit"},
		{"garbage over the size limit", bytes.Repeat([]byte("x"), 65<<10), nil, 400, "gzip"},
	}
	for _, c := range cases {
		_, err := push(h, c.b, c.sig)
		if client.StatusOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %d with %q", c.name, err, c.code, c.want)
		}
	}
	// Wrong content type.
	req, _ := http.NewRequest("POST", h.addr+"/v1/releases", bytes.NewReader(next))
	req.Header.Set("Authorization", "Bearer "+h.srv.AdminToken)
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := h.http.Do(req); err != nil || resp.StatusCode != 415 {
		t.Fatalf("wrong content type: %v %v", resp.StatusCode, err)
	}
	if got := lastEventID(t, h.admin); got != before {
		t.Fatalf("refused pushes wrote events (%d → %d)", before, got)
	}
	if got := blobFiles(t, h); len(got) != blobsBefore {
		t.Fatalf("refused pushes left blobs: %v", got)
	}
	rels, _ := h.admin.Releases(ctx, "")
	if len(rels) != 1 {
		t.Fatalf("releases after refusals: %+v", rels)
	}
}
