// Package signing makes and checks the minisign (ed25519) keys and signatures that releases
// carry, in minisign's own formats, so bundles can be signed and verified with the stock
// minisign tool as well as with ferry.
package signing

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
)

// File names of a key pair made by GenerateKeyPair.
const (
	SecretKeyFile = "ferry.key"
	PublicKeyFile = "ferry.pub"
)

// GenerateKeyPair writes a new key pair into dir: the secret key (mode 0600, encrypted with
// password; with an empty password it is stored unencrypted, as `minisign -G -W` does) and the
// public key. It refuses to overwrite a key.
func GenerateKeyPair(dir, password string) (minisign.PublicKey, error) {
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return pub, err
	}
	var sec []byte
	if password == "" {
		sec, err = priv.MarshalText()
	} else {
		sec, err = minisign.EncryptKey(password, priv)
	}
	if err != nil {
		return pub, err
	}
	pubText, err := pub.MarshalText()
	if err != nil {
		return pub, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return pub, err
	}
	secFile, pubFile := filepath.Join(dir, SecretKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, f := range []string{secFile, pubFile} {
		if _, err := os.Stat(f); err == nil {
			return pub, fmt.Errorf("%s already exists; move it away to make a new key", f)
		}
	}
	if err := os.WriteFile(secFile, sec, 0o600); err != nil {
		return pub, err
	}
	if err := os.WriteFile(pubFile, append(pubText, '\n'), 0o644); err != nil {
		return pub, err
	}
	return pub, nil
}

// LoadSecretKey reads a minisign secret key (made by ferry or by minisign -G).
func LoadSecretKey(file, password string) (minisign.PrivateKey, error) {
	var k minisign.PrivateKey
	b, err := os.ReadFile(file)
	if err != nil {
		return k, err
	}
	if minisign.IsEncrypted(b) {
		k, err = minisign.DecryptKey(password, b)
	} else {
		err = k.UnmarshalText(b)
	}
	if err != nil {
		return k, fmt.Errorf("secret key %s: %v (set FERRY_KEY_PASSWORD if it is encrypted)", file, err)
	}
	return k, nil
}

// ParsePublicKey reads a public key given as the base64 key itself or as the text of a
// minisign .pub file.
func ParsePublicKey(s string) (minisign.PublicKey, error) {
	var pub minisign.PublicKey
	lines := strings.Split(strings.TrimSpace(s), "\n")
	key := strings.TrimSpace(lines[len(lines)-1])
	if err := pub.UnmarshalText([]byte(key)); err != nil {
		return pub, fmt.Errorf("not a minisign public key: %v", err)
	}
	return pub, nil
}

// SignFile signs file, streaming it, and writes file.minisig; the trusted comment is signed too.
func SignFile(priv minisign.PrivateKey, file, trustedComment string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := minisign.NewReader(f)
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	sig := r.SignWithComments(priv, trustedComment, "signature from ferry secret key")
	out := file + ".minisig"
	if err := os.WriteFile(out, sig, 0o644); err != nil {
		return "", err
	}
	return out, nil
}

// ErrBadSignature is returned when no trusted key verifies a signature.
var ErrBadSignature = errors.New("signature does not verify against any trusted key")

// Verify checks signature over the message read from r against the trusted keys and returns the
// key that verified it.
func Verify(r io.Reader, signature []byte, trusted []minisign.PublicKey) (minisign.PublicKey, error) {
	return NewVerifier(r).Verify(signature, trusted)
}

// Verifier hashes a message as it is read, so a signature can be checked in the same pass that
// reads the message for another purpose (such as checking a bundle's archive).
type Verifier struct {
	mr *minisign.Reader
}

// NewVerifier wraps r.
func NewVerifier(r io.Reader) *Verifier { return &Verifier{mr: minisign.NewReader(r)} }

// Read reads the message, hashing it.
func (v *Verifier) Read(p []byte) (int, error) { return v.mr.Read(p) }

// Verify reads what is left of the message, then checks signature against the trusted keys and
// returns the key that verified it.
func (v *Verifier) Verify(signature []byte, trusted []minisign.PublicKey) (minisign.PublicKey, error) {
	var sig minisign.Signature
	if err := sig.UnmarshalText(signature); err != nil {
		return minisign.PublicKey{}, fmt.Errorf("not a minisign signature: %v", err)
	}
	if _, err := io.Copy(io.Discard, v.mr); err != nil {
		return minisign.PublicKey{}, err
	}
	for _, k := range trusted {
		if k.ID() == sig.KeyID && v.mr.Verify(k, signature) {
			return k, nil
		}
	}
	return minisign.PublicKey{}, ErrBadSignature
}
