package api

import (
	"errors"
	"strings"

	"github.com/ferryhq/ferry/pki"
)

// EnrollPrefix starts every enrollment token.
const EnrollPrefix = "ferry_e_"

// An enrollment token is ferry_e_<id>_<secret>, optionally followed by .<pin>: the hex SHA-256
// of the server CA's public key, so an agent given the token trusts exactly that CA from its
// first connection. The server checks only the part before the dot.

// SplitEnrollToken splits an enrollment token into the credential the server checks and the CA
// pin it carries ("" when it carries none). It refuses anything not of that shape.
func SplitEnrollToken(tok string) (cred, pin string, err error) {
	if len(tok) > 256 {
		return "", "", errors.New("enrollment token is too long")
	}
	cred, pin, dotted := strings.Cut(tok, ".")
	rest, ok := strings.CutPrefix(cred, EnrollPrefix)
	if !ok {
		return "", "", errors.New("not an enrollment token (want ferry_e_…); create one with ferry token create --site SITE")
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || !tokenChars(id) || !tokenChars(secret) {
		return "", "", errors.New("malformed enrollment token; copy it whole from ferry token create")
	}
	if dotted && !pki.ValidPin(pin) {
		return "", "", errors.New("malformed CA pin in the enrollment token; copy the token whole from ferry token create")
	}
	return cred, pin, nil
}

// tokenChars reports whether s is a non-empty run of lower-case base32 characters.
func tokenChars(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
