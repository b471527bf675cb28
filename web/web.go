// Package web is Ferry's browser interface, served by the server at /: sign-in with an operator
// token into a cookie session, an overview with a world map of the sites, site, node, release,
// rollout, statistics and event pages, live rollouts and events over server-sent events. It has
// its own mux, embedded templates and assets (no build step), CSRF protection on every form and
// a strict Content-Security-Policy on every response. It reads the store and calls the
// services; it changes nothing but through them.
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/catalog"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/fault"
	"github.com/ferryhq/ferry/inventory"
	"github.com/ferryhq/ferry/overview"
	"github.com/ferryhq/ferry/rollout"
	"github.com/ferryhq/ferry/store"
	"golang.org/x/time/rate"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Config is what the web interface reads and calls.
type Config struct {
	Store     store.Store
	Inventory *inventory.Service
	Catalog   *catalog.Service
	Rollouts  *rollout.Service
	Tokens    Tokens
	// Overview is the fleet at a glance: the overview page's map and sites' table.
	Overview *overview.Service
	// Logs, when set, serves the last lines of an app's log on a node, fetched from its agent,
	// as plain text; only admins may ask, since logs can hold secrets.
	Logs func(w http.ResponseWriter, r *http.Request, node, app string)
	// Health, Probes and Alerts default to NodeStatusHealth, NoProbes and NoAlerts.
	Health Health
	Probes Probes
	Alerts Alerts
	// Key signs sessions and CSRF tokens: at least 32 bytes, the same on every replica.
	Key []byte
	// Secure marks cookies Secure: the server speaks TLS.
	Secure bool
	// SessionTTL is how long a session lasts (default 12h).
	SessionTTL time.Duration
	// SignInEvery and SignInBurst limit sign-in attempts per source address (default one
	// every 2s, bursts of 5).
	SignInEvery time.Duration
	SignInBurst int
	// MaxLive bounds the live pages (server-sent event streams) open at once (default 256).
	MaxLive int
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Handler serves the browser interface.
type Handler struct {
	cfg      Config
	mux      *http.ServeMux
	pages    map[string]*template.Template
	land     string // the world map's land, as an SVG path
	sessions *sessions
	signIns  *limiter
	origin   *http.CrossOriginProtection
	live     chan struct{} // a token per open live stream
	paths    []string      // the routes that need a session, for Routes
}

// New returns the web interface.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Inventory == nil || cfg.Catalog == nil || cfg.Rollouts == nil || cfg.Tokens == nil {
		return nil, errors.New("web: Store, Inventory, Catalog, Rollouts and Tokens are required")
	}
	if len(cfg.Key) < 32 {
		return nil, errors.New("web: the session key must be at least 32 bytes")
	}
	if cfg.Health == nil {
		cfg.Health = NodeStatusHealth{}
	}
	if cfg.Probes == nil {
		cfg.Probes = NoProbes{}
	}
	if cfg.Alerts == nil {
		cfg.Alerts = NoAlerts{}
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SignInEvery <= 0 {
		cfg.SignInEvery = 2 * time.Second
	}
	if cfg.SignInBurst <= 0 {
		cfg.SignInBurst = 5
	}
	if cfg.MaxLive <= 0 {
		cfg.MaxLive = 256
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	land, err := assetFS.ReadFile("assets/vendor/world-atlas/land-110m.json")
	if err != nil {
		return nil, err
	}
	h := &Handler{
		cfg:      cfg,
		mux:      http.NewServeMux(),
		sessions: &sessions{key: cfg.Key, ttl: cfg.SessionTTL, out: map[string]time.Time{}},
		signIns:  &limiter{every: cfg.SignInEvery, burst: cfg.SignInBurst, addrs: map[string]*rate.Limiter{}},
		origin:   http.NewCrossOriginProtection(),
		live:     make(chan struct{}, cfg.MaxLive),
	}
	if h.land, err = landPath(land, "land"); err != nil {
		return nil, err
	}
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	h.routes()
	return h, nil
}

// Routes lists the browser routes, for the server's route review: every one but the sign-in
// page, its form and the assets needs a session, and every POST a CSRF token and an admin.
func (h *Handler) Routes() []string { return append([]string(nil), h.paths...) }

func (h *Handler) routes() {
	assets, _ := fs.Sub(assetFS, "assets")
	files := http.FileServerFS(assets)
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", cacheAssets(files)))
	h.mux.HandleFunc("GET /signin", h.signInPage)
	h.mux.HandleFunc("POST /signin", h.signIn)
	h.mux.HandleFunc("POST /signout", h.signOut)

	h.page("GET /{$}", h.overview)
	h.page("GET /map", h.mapFragment)
	h.page("GET /sites/{name}", h.sitePage)
	h.page("GET /nodes/{name}", h.nodePage)
	h.page("GET /nodes/{name}/logs/{app}", h.nodeLogs)
	h.page("GET /releases", h.releasesPage)
	h.page("GET /rollouts", h.rolloutsPage)
	h.page("GET /rollouts/{id}", h.rolloutPage)
	h.page("GET /rollouts/{id}/live", h.rolloutLive)
	h.page("POST /rollouts/{id}/{action}", h.actOnRollout)
	h.page("GET /alerts", h.alertsPage)
	h.page("POST /alerts/{id}/ack", h.ackAlert)
	h.page("GET /stats", h.statsPage)
	h.page("GET /events", h.eventsPage)
	h.page("GET /events/live", h.eventsLive)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, nil, &pageError{http.StatusNotFound, "There is no page at " + r.URL.Path + "."})
	})
}

// cacheAssets lets browsers keep the embedded assets for a while: they change only with the
// binary.
func cacheAssets(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the browser interface with its security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	Secure(h.mux).ServeHTTP(w, r)
}

// CSP is the Content-Security-Policy of every browser response: scripts, styles, images and
// connections from this origin only, no inline script or style, no eval, no framing.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Secure sets the browser security headers on every response of next, whatever it answers
// (redirects and errors included): the server wraps its whole mux in it, so that even the
// mux's own redirects carry them.
func Secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// pageFunc is a page handler: it returns its failure instead of writing it.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// page registers a route that needs a session; a POST also needs an admin, a same-origin
// request and the session's CSRF token.
func (h *Handler) page(pattern string, fn pageFunc) {
	h.paths = append(h.paths, pattern)
	post := strings.HasPrefix(pattern, "POST ")
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s, err := h.session(r)
		if err != nil {
			if post || r.Header.Get("Accept") == "text/event-stream" {
				h.fail(w, r, nil, &pageError{http.StatusUnauthorized, "Your session has ended: sign in again."})
				return
			}
			http.Redirect(w, r, "/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if post {
			if err := h.checkForm(r, s, true); err != nil {
				h.fail(w, r, s, err)
				return
			}
		}
		if err := fn(w, r, s); err != nil {
			h.fail(w, r, s, err)
		}
	})
}

// session returns the request's session, its role read afresh from the token service.
func (h *Handler) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, errNoSession
	}
	s, err := h.sessions.parse(c.Value, h.cfg.Clock.Now())
	if err != nil {
		return nil, err
	}
	role, err := h.cfg.Tokens.Role(r.Context(), s.TokenID)
	if err != nil {
		return nil, errNoSession
	}
	s.Role = role
	ctx := store.WithActor(r.Context(), store.Actor{ID: "token:" + s.TokenID, Role: role, Source: r.RemoteAddr})
	*r = *r.WithContext(ctx)
	return &s, nil
}

// maxForm bounds a change form's body.
const maxForm = 16 << 10

// checkForm admits a form: from this origin, with the session's CSRF token, and by an admin when
// it changes the fleet.
func (h *Handler) checkForm(r *http.Request, s *session, change bool) error {
	if err := h.origin.Check(r); err != nil {
		return &pageError{http.StatusForbidden, "This form came from another site; it was refused."}
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		return &pageError{http.StatusBadRequest, "The form could not be read."}
	}
	if !hmacEqual(r.PostForm.Get("csrf"), s.CSRF) {
		return &pageError{http.StatusForbidden, "The form has expired or did not come from this page: reload the page and try again."}
	}
	if change && s.Role != api.RoleAdmin {
		return &pageError{http.StatusForbidden, "You are signed in with a viewer token: it can see everything and change nothing."}
	}
	return nil
}

// pageError is a failure with the status and sentence a page shows.
type pageError struct {
	code int
	msg  string
}

func (e *pageError) Error() string { return e.msg }

// fail renders an error page, mapping the services' failures as the API does.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code, msg := http.StatusInternalServerError, "Something went wrong; the server log says what."
	var pe *pageError
	switch {
	case errors.As(err, &pe):
		code, msg = pe.code, pe.msg
	case errors.Is(err, fault.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, fault.ErrForbidden):
		code, msg = http.StatusForbidden, err.Error()
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, store.ErrNotFound):
		code, msg = http.StatusNotFound, err.Error()
	case errors.Is(err, fault.ErrConflict), errors.Is(err, store.ErrExists):
		code, msg = http.StatusConflict, err.Error()
	case errors.Is(err, context.Canceled):
		return
	default:
		h.cfg.Logger.Error("web page failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	h.render(w, r, code, "error", s, map[string]any{"Code": code, "Status": http.StatusText(code), "Message": msg})
}

// view is what every page template gets. Each page's template defines its "title": the page
// and its subject.
type view struct {
	Session *session
	Admin   bool
	Path    string
	Data    any
}

// render writes a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, s *session, data any) {
	t, ok := h.pages[name]
	if !ok {
		panic("web: no page " + name)
	}
	v := view{Session: s, Admin: s != nil && s.Role == api.RoleAdmin, Path: r.URL.Path, Data: data}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "page", v); err != nil {
		h.cfg.Logger.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprint(w, b.String())
}

// renderFragment writes one template of the layout alone (no page around it).
func (h *Handler) renderFragment(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := h.pages["error"].ExecuteTemplate(&b, name, data); err != nil {
		h.cfg.Logger.Error("render fragment", "fragment", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, b.String())
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, err
		}
		pages[name] = t
	}
	return pages, nil
}
