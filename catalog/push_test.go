package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/internal/backend"
	"github.com/ferryhq/ferry/internal/bundletest"
	"github.com/ferryhq/ferry/signing"
	"github.com/ferryhq/ferry/store"
)

var errCut = errors.New("connection cut")

// cutReader ends in an error where its reader ends.
type cutReader struct {
	r io.Reader
}

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, errCut
	}
	return n, err
}

// Push admits a bundle signed by a trusted key and refuses, storing nothing, one that is
// unsigned, signed by an unknown key, signed over other bytes, malformed or cut short.
func TestPush(t *testing.T) {
	backend.Each(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		c := newService(t, st)
		pub, priv, err := minisign.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		b := bundletest.Build(t, "hello", "1.0.0", "hi")
		f := filepath.Join(t.TempDir(), "b.tar.gz")
		os.WriteFile(f, b, 0o644)
		sigFile, err := signing.SignFile(priv, f, "test")
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := os.ReadFile(sigFile)

		refused := func(what string, body io.Reader, sig []byte, kind error) {
			t.Helper()
			_, _, _, err := c.Push(ctx, body, sig)
			isKind(t, what, err, kind)
			if rels, _ := st.Releases(ctx, ""); len(rels) != 0 {
				t.Fatalf("%s: stored %+v", what, rels)
			}
			if sums, _ := c.blobs.List(); len(sums) != 0 {
				t.Fatalf("%s: left blobs %v", what, sums)
			}
		}
		refused("unsigned", bytes.NewReader(b), nil, fault.ErrConflict)
		refused("signed by an untrusted key", bytes.NewReader(b), sig, fault.ErrForbidden)
		if _, _, err := c.TrustKey(ctx, pub.String(), ""); err != nil {
			t.Fatal(err)
		}
		refused("signed over other bytes", bytes.NewReader(bundletest.Build(t, "hello", "1.0.0", "other")), sig, fault.ErrForbidden)
		refused("not a bundle", bytes.NewReader([]byte("hello")), sig, fault.ErrInvalid)
		_, _, _, err = c.Push(ctx, cutReader{bytes.NewReader(b)}, sig)
		if !errors.Is(err, errCut) || !errors.Is(err, fault.ErrInvalid) {
			t.Fatalf("cut upload: %v", err)
		}
		refused("too big a signature", bytes.NewReader(b), make([]byte, MaxSignature+1), fault.ErrInvalid)

		rel, ev, created, err := c.Push(ctx, bytes.NewReader(b), sig)
		if err != nil || !created || ev.ID == 0 || rel.SignedBy != fmt.Sprintf("%016X", pub.ID()) || fmt.Sprint(rel.Channels) != "[unstable]" {
			t.Fatalf("Push = %+v %+v %v %v", rel, ev, created, err)
		}
		blob, err := c.blobs.Open(rel.SHA256)
		if err != nil {
			t.Fatalf("blob of the release: %v", err)
		}
		blob.Close()
		if _, _, created, err := c.Push(ctx, bytes.NewReader(b), sig); err != nil || created {
			t.Fatalf("the same push again: created %v, %v", created, err)
		}
	})
}
