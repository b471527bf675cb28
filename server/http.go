package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/postgres"
)

// maxBody bounds every JSON request body.
const maxBody = 1 << 20

// httpError is an error with the status it maps to.
type httpError struct {
	code int
	msg  string
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// handlerFunc is an HTTP handler that returns its failure instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// access says who may call a route.
type access int

const (
	public       access = iota // anyone
	viewer                     // any operator token
	admin                      // admin operator token
	agentEnroll                // agent protocol; credential checked by the handler
	agentSession               // agent protocol and a session token
	reader                     // any operator token, or an agent session
	scraper                    // anyone, or only the metrics token when the server has one
)

func (a access) String() string {
	return [...]string{"public", "viewer", "admin", "agent-enroll", "agent-session", "reader", "scraper"}[a]
}

// route is one registered endpoint, kept so a test can walk them all.
type route struct {
	pattern string
	access  access
}

// writeError maps an error to a status and a JSON body; the one place that does.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := "internal error; see the server log"
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
		if he.retryAfter != "" {
			w.Header().Set("Retry-After", he.retryAfter)
		}
	case errors.As(err, &mbe):
		code, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, fault.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, fault.ErrForbidden):
		code, msg = http.StatusForbidden, err.Error()
	case errors.Is(err, fault.ErrUnauthorized):
		code, msg = http.StatusUnauthorized, err.Error()
	case errors.Is(err, fault.ErrNotFound):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, fault.ErrConflict):
		code, msg = http.StatusConflict, err.Error()
	case errors.Is(err, store.ErrNotFound):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrExists):
		code, msg = http.StatusConflict, err.Error()
	case postgres.Unavailable(err):
		code, msg = http.StatusServiceUnavailable, "the database is unavailable; try again shortly"
		w.Header().Set("Retry-After", "1")
		s.log.Warn("request failed: database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, code, api.Error{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// decode reads one JSON document into v, strictly: right content type, bounded size, no
// unknown fields, nothing after it.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, "content type %q not accepted; send application/json", ct)
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxBody)
	return decodeJSON(body, v)
}

// decodeJSON is decode's reader half, split out for fuzzing.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "empty request body; send a JSON document")
		}
		return errorf(http.StatusBadRequest, "malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "malformed JSON: data after the document")
	}
	return nil
}

// queryInt64 parses an optional integer query parameter.
func queryInt64(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, "bad %s %q: want a non-negative integer", name, v)
	}
	return n, nil
}

// statusRecorder remembers the status for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// handle registers a route with its access rule, metrics, access log and error mapping. The
// public agent routes are rate-limited per source address before anything else is looked at.
func (s *Server) handle(pattern string, acc access, h handlerFunc) {
	s.routes = append(s.routes, route{pattern: pattern, access: acc})
	hist := s.metrics.requestDuration
	logLevel := slog.LevelInfo
	if acc == public || acc == scraper {
		logLevel = slog.LevelDebug // probes and scrapes
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		err := error(nil)
		if acc == agentEnroll {
			err = s.limitPublic(r)
		}
		if err == nil {
			err = s.authorize(r, acc)
		}
		if err == nil {
			err = h(rec, r)
		}
		if err != nil {
			s.writeError(rec, r, err)
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		took := time.Since(start)
		hist.WithLabelValues(pattern, strconv.Itoa(code)).Observe(took.Seconds())
		a := store.ActorFrom(r.Context())
		if a == store.System {
			a = store.Actor{ID: "anonymous", Source: sourceAddr(r)}
		}
		s.log.Log(r.Context(), logLevel, "request", "method", r.Method, "route", pattern, "status", code,
			"duration", took.Round(time.Microsecond), "actor", a.ID, "source", a.Source)
	})
}
