package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

// SignatureHeader carries the base64 of a bundle's .minisig file on a push.
const SignatureHeader = "Ferry-Signature"

// pushRelease streams a bundle into the blob store's staging area while hashing it, checks it
// (archive, manifest, signature against the trusted keys) and records the release. A refused
// push stores nothing.
//
// The staged blob is committed and the release recorded under the blob store's lock of the sum,
// and a blob this push created is removed again, when recording fails, under that same lock. So
// a concurrent push of the same bytes either commits before us (we find the blob and never
// remove it) or after our removal (it puts its own copy in place): no release ever refers to a
// removed blob. The collector takes the same lock before it removes anything.
func (s *Server) pushRelease(w http.ResponseWriter, r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/gzip", "application/x-gzip", "application/octet-stream":
	default:
		return errorf(http.StatusUnsupportedMediaType, "content type %q not accepted; send the bundle as application/gzip", r.Header.Get("Content-Type"))
	}
	var sig []byte
	if h := r.Header.Get(SignatureHeader); h != "" {
		var err error
		if sig, err = base64.StdEncoding.DecodeString(h); err != nil || len(sig) > 4096 {
			return errorf(http.StatusBadRequest, "%s header must be the base64 of a .minisig file", SignatureHeader)
		}
	}
	trusted, err := s.trustedKeys(r)
	if err != nil {
		return err
	}
	// The archive and signature checks run on the incoming stream, in their own goroutine, while
	// the blob store writes and hashes it: two cores, one pass. A bundle that fails the archive
	// check stops the upload there.
	pr, pw := io.Pipe()
	checked := make(chan bundleCheck, 1)
	go func() {
		c := checkBundle(pr, sig, trusted, release.Limits{MaxUnpacked: s.cfg.MaxUnpackedSize})
		pr.CloseWithError(errBundleRefused)
		checked <- c
	}()
	body := http.MaxBytesReader(w, stretchReadDeadline(w, r.Body, s.cfg.ReadTimeout), s.cfg.MaxBundleSize)
	staged, putErr := s.blobs.Stage(io.TeeReader(body, pw))
	pw.CloseWithError(putErr)
	c := <-checked
	if staged != nil {
		defer staged.Discard() // unless committed
	}
	if putErr != nil && !errors.Is(putErr, errBundleRefused) {
		var mbe *http.MaxBytesError
		if errors.As(putErr, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "bundle larger than the server's limit of %d bytes", s.cfg.MaxBundleSize)
		}
		return errorf(http.StatusBadRequest, "upload interrupted: %v", putErr)
	}
	if c.err != nil {
		return c.err // refused by the checks: the staged copy is dropped, the store untouched
	}
	if staged == nil {
		// The check passed without reading the whole upload: it cannot have, but store nothing.
		return fmt.Errorf("bundle check ended before the upload: %w", putErr)
	}
	rel, err := s.commitRelease(r, c, staged, sig)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rel)
	return nil
}

// commitRelease puts a checked, staged blob in place and records its release, both under the
// lock of the blob's sum. When recording fails and this push created the blob, the blob is
// removed again — still under the lock, and only if no release refers to it after all (a
// failure can come after the release was written, e.g. a cancelled request).
func (s *Server) commitRelease(r *http.Request, c bundleCheck, staged *blobstore.Staged, sig []byte) (api.Release, error) {
	defer s.blobs.Lock(staged.Sum)()
	created, err := staged.Commit()
	if err != nil {
		return api.Release{}, err
	}
	rel, err := s.admitRelease(r, c, staged.Sum, staged.Size, sig)
	if err != nil && created {
		refs, rerr := s.store.ReferencedBlobs(context.WithoutCancel(r.Context()))
		switch {
		case rerr != nil:
			s.log.Warn("refused push: keeping its blob for the collector", "sha256", staged.Sum, "err", rerr)
		case !refs[staged.Sum]:
			if rerr := s.blobs.Remove(staged.Sum); rerr != nil {
				s.log.Warn("refused push: remove its blob", "sha256", staged.Sum, "err", rerr)
			}
		}
	}
	return rel, err
}

// errBundleRefused ends an upload whose bundle failed its checks.
var errBundleRefused = errors.New("bundle refused")

// bundleCheck is the outcome of checking a pushed bundle.
type bundleCheck struct {
	manifest *release.Manifest
	signer   string // key id, when signed
	err      error  // an *httpError
}

// checkBundle reads a bundle once, checking the archive and, when sig is set, the signature
// against the trusted keys. It consumes r to the end unless the bundle is refused.
func checkBundle(r io.Reader, sig []byte, trusted []minisign.PublicKey, lim release.Limits) bundleCheck {
	v := signing.NewVerifier(r)
	m, err := release.Read(v, lim)
	if err != nil {
		return bundleCheck{err: errorf(http.StatusBadRequest, "%v", err)}
	}
	if sig == nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return bundleCheck{err: errorf(http.StatusBadRequest, "upload interrupted: %v", err)}
		}
		return bundleCheck{manifest: m}
	}
	pub, err := v.Verify(sig, trusted)
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, signing.ErrUntrustedKey):
			hint = "; trust the signer with ferry key trust"
		case errors.Is(err, signing.ErrMismatch):
			hint = "; sign the bundle again with ferry release sign"
		}
		return bundleCheck{err: errorf(http.StatusForbidden, "%s@%s: %v%s", m.App, m.Version, err, hint)}
	}
	return bundleCheck{manifest: m, signer: fmt.Sprintf("%016X", pub.ID())}
}

// trustedKeys returns the signing keys that are trusted and not revoked.
func (s *Server) trustedKeys(r *http.Request) ([]minisign.PublicKey, error) {
	keys, err := s.store.Keys(r.Context())
	if err != nil {
		return nil, err
	}
	var trusted []minisign.PublicKey
	for _, k := range keys {
		if k.RevokedAt != nil {
			continue
		}
		if pub, err := signing.ParsePublicKey(k.PublicKey); err == nil {
			trusted = append(trusted, pub)
		}
	}
	return trusted, nil
}

// admitRelease records a checked bundle as a release.
func (s *Server) admitRelease(r *http.Request, c bundleCheck, sum string, size int64, sig []byte) (api.Release, error) {
	if c.err != nil {
		return api.Release{}, c.err
	}
	m := c.manifest
	var manifest map[string]any
	b, _ := json.Marshal(m)
	json.Unmarshal(b, &manifest)
	rel, ev, created, err := s.store.PutRelease(r.Context(), api.Release{App: m.App, Version: m.Version, Class: m.Class,
		SHA256: sum, Size: size, SignedBy: c.signer, Signature: base64.StdEncoding.EncodeToString(sig), CreatedAt: s.clk.Now().UTC(), Manifest: manifest})
	if err != nil {
		return rel, err
	}
	if created {
		s.settle(r.Context(), ev)
	}
	return rel, nil
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) error {
	rels, err := s.store.Releases(r.Context(), r.URL.Query().Get("app"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rels)
	return nil
}

func (s *Server) showRelease(w http.ResponseWriter, r *http.Request) error {
	rel, err := s.store.Release(r.Context(), r.PathValue("app"), r.PathValue("version"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

// getBlob serves a blob with Range and If-None-Match support (http.ServeContent), for agents and
// operators, so relays and mirrors can front it later.
func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	sum, ok := strings.CutPrefix(r.PathValue("digest"), "sha256:")
	if !ok || !blobstore.ValidSum(sum) {
		return errorf(http.StatusBadRequest, "blob address must be sha256:<64 lower-case hex digits>")
	}
	defer s.downloading.begin(sum)()
	f, err := s.blobs.Open(sum)
	if errors.Is(err, os.ErrNotExist) {
		return errorf(http.StatusNotFound, "blob sha256:%s not found", sum)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("ETag", `"sha256:`+sum+`"`)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}
