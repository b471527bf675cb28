package server

import (
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"os"
	"strings"

	"github.com/ferryhq/ferry/blobstore"
	"github.com/ferryhq/ferry/catalog"
)

// SignatureHeader carries the base64 of a bundle's .minisig file on a push.
const SignatureHeader = "Ferry-Signature"

// pushRelease streams a bundle to the catalog, which checks it (archive, manifest, signature
// against the trusted keys) and records the release. A refused push stores nothing.
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
		if sig, err = base64.StdEncoding.DecodeString(h); err != nil || len(sig) > catalog.MaxSignature {
			return errorf(http.StatusBadRequest, "%s header must be the base64 of a .minisig file", SignatureHeader)
		}
	}
	body := http.MaxBytesReader(w, stretchReadDeadline(w, r.Body, s.cfg.ReadTimeout), s.cfg.MaxBundleSize)
	rel, ev, created, err := s.catalog.Push(r.Context(), body, sig)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, "bundle larger than the server's limit of %d bytes", s.cfg.MaxBundleSize)
	}
	if err != nil {
		return err
	}
	if !created {
		writeJSON(w, http.StatusOK, rel) // the same bytes under that version already: nothing changed
		return nil
	}
	s.settle(r.Context(), ev)
	writeJSON(w, http.StatusCreated, rel)
	return nil
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
