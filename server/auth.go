package server

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/store"
)

// Operator and enrollment tokens look like ferry_o_<id>_<secret> and ferry_e_<id>_<secret>:
// the id finds the record, the secret is checked against its stored hash. The prefix lets
// secret scanners recognise a leaked token.
const (
	prefixOperator = "ferry_o_"
	prefixEnroll   = "ferry_e_"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newToken makes a token string, its id and the hash to store.
func newToken(prefix string) (secret, id, hash string) {
	idb := make([]byte, 5)
	rand.Read(idb)
	sb := make([]byte, 20)
	rand.Read(sb)
	id = strings.ToLower(b32.EncodeToString(idb))
	secret = prefix + id + "_" + strings.ToLower(b32.EncodeToString(sb))
	return secret, id, hashToken(secret)
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// splitToken returns the id of a well-formed token with the given prefix.
func splitToken(tok, prefix string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok {
		return "", false
	}
	id, _, ok = strings.Cut(rest, "_")
	return id, ok && id != ""
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(tok)
}

type ctxKey int

const ctxNode ctxKey = 0

// authorize checks the credential a route needs and leaves the caller's identity on the request
// context for the handler.
func (s *Server) authorize(r *http.Request, acc access) error {
	switch acc {
	case public:
		return nil
	case scraper:
		return s.authorizeScrape(r)
	case reader:
		tok := bearer(r)
		if strings.HasPrefix(tok, "ferry_s_") {
			node, err := s.verifySession(tok)
			if err != nil {
				return err
			}
			*r = *r.WithContext(store.WithActor(r.Context(), store.Actor{ID: "node:" + node, Source: sourceAddr(r)}))
			return nil
		}
		return s.authorize(r, viewer)
	case viewer, admin:
		tok := bearer(r)
		role, err := s.operatorRole(r.Context(), tok)
		if err != nil {
			return err
		}
		// The caller is known from here on, refused or not: the access log names who.
		id, _ := splitToken(tok, prefixOperator)
		*r = *r.WithContext(store.WithActor(r.Context(), store.Actor{ID: "token:" + id, Role: role, Source: sourceAddr(r)}))
		if acc == admin && role != api.RoleAdmin {
			return errorf(http.StatusForbidden, "this token has role %s; the request needs an admin token", role)
		}
		return nil
	case agentEnroll, agentSession:
		if err := checkProtocol(r); err != nil {
			return err
		}
		if acc == agentEnroll {
			// The credential is in the body; the handler names the node once it is proven.
			*r = *r.WithContext(store.WithActor(r.Context(), store.Actor{ID: "anonymous", Source: sourceAddr(r)}))
			return nil
		}
		node, err := s.verifySession(bearer(r))
		if err != nil {
			return err
		}
		ctx := context.WithValue(r.Context(), ctxNode, node)
		*r = *r.WithContext(store.WithActor(ctx, store.Actor{ID: "node:" + node, Source: sourceAddr(r)}))
		return nil
	}
	return errorf(http.StatusForbidden, "forbidden")
}

func (s *Server) operatorRole(ctx context.Context, tok string) (string, error) {
	if tok == "" {
		return "", errorf(http.StatusUnauthorized, "missing API token; set FERRY_TOKEN or pass --token")
	}
	id, ok := splitToken(tok, prefixOperator)
	if !ok {
		return "", errorf(http.StatusUnauthorized, "invalid API token")
	}
	rec, err := s.store.Token(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", errorf(http.StatusUnauthorized, "invalid API token")
	}
	if err != nil {
		return "", err
	}
	if rec.Kind != store.KindOperator || subtle.ConstantTimeCompare([]byte(rec.SecretHash), []byte(hashToken(tok))) != 1 {
		return "", errorf(http.StatusUnauthorized, "invalid API token")
	}
	if rec.ExpiresAt != nil && !s.clk.Now().Before(*rec.ExpiresAt) {
		return "", errorf(http.StatusUnauthorized, "API token expired at %s", rec.ExpiresAt.Format(time.RFC3339))
	}
	return rec.Role, nil
}

// checkProtocol enforces the agent protocol range.
func checkProtocol(r *http.Request) error {
	v := r.Header.Get(api.ProtocolHeader)
	n, err := strconv.Atoi(v)
	if err != nil || n < api.MinProtocol || n > api.MaxProtocol {
		if v == "" {
			v = "none"
		}
		return errorf(http.StatusUpgradeRequired, "agent protocol %s is not supported: this server speaks %d to %d; upgrade the agent (or the server)", v, api.MinProtocol, api.MaxProtocol)
	}
	return nil
}

// Session tokens are stateless: node, the fingerprint of the key it enrolled with, expiry and an
// HMAC under the cluster key, so checking one costs a hash and a map read, and they stay valid
// across restarts and replicas until they expire. The fingerprint binds a session to one
// enrollment: once a node is revoked and its name enrolled again with another key, the old
// identity's sessions are refused. Revocation itself is enforced by the node cache on every
// request.
const sessionTTL = time.Hour

func (s *Server) issueSession(node, publicKey string) api.Session {
	now := s.clk.Now()
	exp := now.Add(sessionTTL).Truncate(time.Second)
	payload := base64.RawURLEncoding.EncodeToString([]byte(node)) + "." + keyFingerprint(publicKey) + "." + strconv.FormatInt(exp.Unix(), 10)
	return api.Session{Token: "ferry_s_" + payload + "." + s.mac("session", payload), ExpiresAt: exp,
		ExpiresIn: api.Duration(exp.Sub(now).Truncate(time.Second))}
}

// keyFingerprint names a node key in session tokens: 16 bytes of its SHA-256.
func keyFingerprint(publicKey string) string {
	h := sha256.Sum256([]byte(publicKey))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

var errBadSession = errorf(http.StatusUnauthorized, "invalid or expired agent session; open a new one")

// verifySession checks a session token against the cluster key, the clock and the node's
// current enrollment, and returns the node.
func (s *Server) verifySession(tok string) (string, error) {
	node, fp, exp, err := s.session(tok)
	if err != nil || !s.liveSession(exp) {
		return "", errBadSession
	}
	if !s.hub.enrolledWith(node, fp) {
		return "", errorf(http.StatusUnauthorized, "node %s is revoked, unknown or enrolled again with another key; enroll it again with a new token", node)
	}
	return node, nil
}

// liveSession reports whether a session expiring at exp may be used now. However far ahead its
// token says it expires, a session lives at most sessionTTL on the server's clock (and a minute
// more, for replicas whose clocks differ a little).
func (s *Server) liveSession(exp time.Time) bool {
	now := s.clk.Now()
	return now.Before(exp) && !exp.After(now.Add(sessionTTL+time.Minute))
}

// session checks a session token's HMAC and returns its node, key fingerprint and expiry.
func (s *Server) session(tok string) (node, fp string, exp time.Time, err error) {
	rest, ok := strings.CutPrefix(tok, "ferry_s_")
	if !ok || len(rest) > 512 {
		return "", "", time.Time{}, errBadSession
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", "", time.Time{}, errBadSession
	}
	payload, sig := rest[:i], rest[i+1:]
	if !hmac.Equal([]byte(sig), []byte(s.mac("session", payload))) {
		return "", "", time.Time{}, errBadSession
	}
	parts := strings.Split(payload, ".")
	if len(parts) != 3 {
		return "", "", time.Time{}, errBadSession
	}
	unix, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", "", time.Time{}, errBadSession
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", "", time.Time{}, errBadSession
	}
	return string(name), parts[1], time.Unix(unix, 0), nil
}

func (s *Server) mac(purpose, payload string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(purpose + "\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Challenges are stateless too (random, node, expiry, HMAC), and single-use: a spent nonce is
// recorded in the store until it expires, so neither a restart nor another replica honours it
// again.
const challengeTTL = time.Minute

func (s *Server) issueChallenge(node string) api.Challenge {
	exp := s.clk.Now().Add(challengeTTL)
	b := make([]byte, 16+8)
	rand.Read(b[:16])
	binary.BigEndian.PutUint64(b[16:], uint64(exp.Unix()))
	payload := base64.RawURLEncoding.EncodeToString(b)
	return api.Challenge{Nonce: payload + "." + s.mac("challenge:"+node, payload), ExpiresAt: exp.Truncate(time.Second)}
}

func (s *Server) spendChallenge(ctx context.Context, node, nonce string) error {
	bad := errorf(http.StatusUnauthorized, "invalid, expired or already used challenge; ask for a new one")
	payload, sig, ok := strings.Cut(nonce, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.mac("challenge:"+node, payload))) {
		return bad
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) != 24 {
		return bad
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[16:])), 0)
	now := s.clk.Now()
	if !now.Before(exp) {
		return bad
	}
	fresh, err := s.store.SpendNonce(ctx, payload, exp, now)
	if err != nil {
		return err
	}
	if !fresh {
		return bad
	}
	return nil
}

// verifyKeySig checks an ed25519 signature given as base64 strings.
func verifyKeySig(pubB64 string, msg []byte, sigB64 string) error {
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	// Only the canonical encoding: the key is stored and compared (one node per key, sessions
	// bound to it) as text, and base64 has other spellings of the same bytes.
	if err != nil || len(pub) != ed25519.PublicKeySize || base64.StdEncoding.EncodeToString(pub) != pubB64 {
		return errorf(http.StatusBadRequest, "public_key must be the base64 of an ed25519 public key, canonically encoded")
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
		return errorf(http.StatusUnauthorized, "signature does not verify against the node's key")
	}
	return nil
}
