package web

import (
	"crypto/hmac"
	"net/http"
	"net/url"
)

func (h *Handler) signInPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "signin", nil, map[string]any{"Next": localPath(r.URL.Query().Get("next"))})
}

// signIn trades an operator token for a session cookie.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	again := func(code int, msg, next string) {
		h.render(w, r, code, "signin", nil, map[string]any{"Next": next, "Error": msg})
	}
	if err := h.origin.Check(r); err != nil {
		again(http.StatusForbidden, "This form came from another site; it was refused.", "/")
		return
	}
	if !h.signIns.allow(r, h.cfg.Clock.Now()) {
		w.Header().Set("Retry-After", "2")
		again(http.StatusTooManyRequests, "Too many sign-in attempts from your address: wait a few seconds and try again.", "/")
		return
	}
	form, err := parseSignIn(r.Body)
	if err != nil {
		again(http.StatusBadRequest, err.Error()+".", "/")
		return
	}
	id, _, err := h.cfg.Tokens.Authenticate(r.Context(), form.Token)
	if err != nil {
		h.cfg.Logger.Info("web sign-in refused", "source", r.RemoteAddr, "err", err)
		again(http.StatusUnauthorized, "That token is not valid here: it is mistyped, revoked or expired.", form.Next)
		return
	}
	value, exp := h.sessions.issue(id, h.cfg.Clock.Now())
	http.SetCookie(w, h.cookie(value, exp.Sub(h.cfg.Clock.Now())))
	h.cfg.Logger.Info("web sign-in", "token", id, "source", r.RemoteAddr)
	http.Redirect(w, r, form.Next, http.StatusSeeOther)
}

// signOut ends the session: the cookie is cleared, and the session refused even if replayed.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	s, err := h.session(r)
	if err == nil {
		if err := h.checkForm(r, s, false); err != nil {
			h.fail(w, r, s, err)
			return
		}
		h.sessions.signOut(s.ID, s.Expires, h.cfg.Clock.Now())
	}
	http.SetCookie(w, h.cookie("", 0))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

func hmacEqual(a, b string) bool { return a != "" && hmac.Equal([]byte(a), []byte(b)) }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
