package catalog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"github.com/ferryhq/ferry/store"
)

// MaxSignature bounds a pushed .minisig file.
const MaxSignature = 4096

// UploadError is a push whose bundle could not be read to its end: the connection broke or the
// caller's reader refused more (an *http.MaxBytesError, say, which errors.As finds). It is of
// kind fault.ErrInvalid.
type UploadError struct{ Err error }

func (e *UploadError) Error() string   { return "upload interrupted: " + e.Err.Error() }
func (e *UploadError) Unwrap() []error { return []error{fault.ErrInvalid, e.Err} }

// Push reads a bundle to its end, checks it (archive, manifest, and sig, when given, against the
// trusted keys) and records its release in the first channel. A refused push stores nothing.
// Pushing the same bytes as an existing release again changes nothing and returns it with
// created false.
//
// The archive and signature checks run on the incoming stream in their own goroutine while the
// blob store writes and hashes it: two cores, one pass. A bundle that fails the archive check
// stops the upload there.
//
// The staged blob is committed and the release recorded under the blob store's lock of the sum,
// and a blob this push created is removed again, when recording fails, under that same lock. So
// a concurrent push of the same bytes either commits before us (we find the blob and never
// remove it) or after our removal (it puts its own copy in place): no release ever refers to a
// removed blob. The collector takes the same lock before it removes anything.
func (s *Service) Push(ctx context.Context, bundle io.Reader, sig []byte) (rel api.Release, ev api.Event, created bool, err error) {
	if len(sig) > MaxSignature {
		return rel, ev, false, fault.Invalid("signature larger than %d bytes", MaxSignature)
	}
	trusted, err := s.trustedKeys(ctx)
	if err != nil {
		return rel, ev, false, err
	}
	pr, pw := io.Pipe()
	checked := make(chan bundleCheck, 1)
	go func() {
		c := checkBundle(pr, sig, trusted, s.limits)
		pr.CloseWithError(errBundleRefused)
		checked <- c
	}()
	staged, putErr := s.blobs.Stage(io.TeeReader(bundle, pw))
	pw.CloseWithError(putErr)
	c := <-checked
	if staged != nil {
		defer staged.Discard() // unless committed
	}
	if putErr != nil && !errors.Is(putErr, errBundleRefused) {
		return rel, ev, false, &UploadError{Err: putErr}
	}
	if c.err != nil {
		return rel, ev, false, c.err // refused by the checks: the staged copy is dropped, the store untouched
	}
	if staged == nil {
		// The check passed without reading the whole upload: it cannot have, but store nothing.
		return rel, ev, false, fmt.Errorf("bundle check ended before the upload: %w", putErr)
	}
	return s.commit(ctx, c, staged, sig)
}

// commit puts a checked, staged blob in place and records its release, both under the lock of
// the blob's sum. When recording fails and this push created the blob, the blob is removed
// again — still under the lock, and only if no release refers to it after all (a failure can
// come after the release was written, e.g. a cancelled request). When recording succeeds, the
// staged copy Settles: a collector on another replica, which does not share the lock, may have
// taken the blob this push found in place.
func (s *Service) commit(ctx context.Context, c bundleCheck, staged *blobstore.Staged, sig []byte) (api.Release, api.Event, bool, error) {
	defer s.blobs.Lock(staged.Sum)()
	blobCreated, err := staged.Commit()
	if err != nil {
		return api.Release{}, api.Event{}, false, err
	}
	m := c.manifest
	var manifest map[string]any
	b, _ := json.Marshal(m)
	json.Unmarshal(b, &manifest)
	r := api.Release{App: m.App, Version: m.Version, Class: m.Class, SHA256: staged.Sum, Size: staged.Size,
		SignedBy: c.signer, Signature: base64.StdEncoding.EncodeToString(sig), CreatedAt: s.clk.Now().UTC(), Manifest: manifest}
	ev, created, err := s.admit(ctx, r)
	if err != nil && blobCreated {
		refs, rerr := s.store.ReferencedBlobs(context.WithoutCancel(ctx))
		switch {
		case rerr != nil:
			s.log.Warn("refused push: keeping its blob for the collector", "sha256", staged.Sum, "err", rerr)
		case !refs[staged.Sum]:
			if rerr := s.blobs.Remove(staged.Sum); rerr != nil {
				s.log.Warn("refused push: remove its blob", "sha256", staged.Sum, "err", rerr)
			}
		}
	}
	if err != nil {
		return api.Release{}, ev, false, err
	}
	if _, err := staged.Settle(); err != nil {
		return api.Release{}, ev, false, fmt.Errorf("put the blob of %s@%s back in place: %w", r.App, r.Version, err)
	}
	rel, err := s.store.Release(ctx, r.App, r.Version)
	return rel, ev, created, err
}

// admit records a checked release in the first channel: a version is immutable, and the first
// channel decides whether an unsigned release may enter.
func (s *Service) admit(ctx context.Context, r api.Release) (ev api.Event, created bool, err error) {
	err = s.store.Update(ctx, func(tx store.Tx) error {
		old, err := tx.Release(r.App, r.Version)
		switch {
		case err == nil && old.SHA256 == r.SHA256:
			return nil
		case err == nil:
			return fault.Conflict("%s@%s already exists with other content (sha256:%s); a version is immutable, push a new version", r.App, r.Version, old.SHA256)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		first, err := firstChannel(tx)
		if err != nil {
			return err
		}
		if err := admitUnsigned(r, first); err != nil {
			return err
		}
		if err := tx.InsertRelease(r); err != nil {
			return err
		}
		if err := tx.AddToChannel(first.Name, r.App, r.Version, "pushed", "", r.CreatedAt); err != nil {
			return err
		}
		created = true
		ev, err = store.AppendOne(tx, api.NewEvent(r.CreatedAt, api.EventReleasePushed, r.App+"@"+r.Version,
			api.ReleasePushed{SHA256: r.SHA256, Size: r.Size, SignedBy: r.SignedBy, Channel: first.Name}))
		return err
	})
	return ev, created, err
}

// errBundleRefused ends an upload whose bundle failed its checks.
var errBundleRefused = errors.New("bundle refused")

// bundleCheck is the outcome of checking a pushed bundle.
type bundleCheck struct {
	manifest *release.Manifest
	signer   string // key id, when signed
	err      error  // of a fault kind
}

// checkBundle reads a bundle once, checking the archive and, when sig is set, the signature
// against the trusted keys. It consumes r to the end unless the bundle is refused.
func checkBundle(r io.Reader, sig []byte, trusted []minisign.PublicKey, lim release.Limits) bundleCheck {
	v := signing.NewVerifier(r)
	m, err := release.Read(v, lim)
	if err != nil {
		return bundleCheck{err: fault.Invalid("%v", err)}
	}
	if sig == nil {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return bundleCheck{err: &UploadError{Err: err}}
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
		return bundleCheck{err: fault.Forbidden("%s@%s: %v%s", m.App, m.Version, err, hint)}
	}
	return bundleCheck{manifest: m, signer: fmt.Sprintf("%016X", pub.ID())}
}

// trustedKeys returns the signing keys that are trusted and not revoked.
func (s *Service) trustedKeys(ctx context.Context) ([]minisign.PublicKey, error) {
	keys, err := s.store.Keys(ctx)
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
