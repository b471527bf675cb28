// Package seal seals the secrets that server replicas share through their database (the session
// secret, the CA's key), so that reading the database alone opens none of them: each is sealed
// with AES-256-GCM under a key derived, with HKDF-SHA256, from the cluster key, which lives in a
// file on each replica and never in the database.
//
// A sealed value is a version byte (1), a random 96-bit nonce, the ciphertext and its 16-byte
// tag. The secret's name and the version byte are authenticated with it, so a value opens only
// under the name it was sealed for: one copied over another secret's row does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// MinKeySize is the shortest cluster key NewKey takes, in bytes.
const MinKeySize = 32

// version1 is the first byte of values sealed as this package seals them.
const version1 byte = 1

// hkdfInfo names what the derived key is for; another use of the cluster key derives another.
const hkdfInfo = "ferry seal v1: AES-256-GCM of a named secret"

var (
	// ErrOpen says a sealed value does not open: it was sealed under another cluster key or
	// for another name, or it was altered.
	ErrOpen = errors.New("sealed under another cluster key or for another name, or damaged")
	// ErrVersion says a sealed value is in a format this build does not know, a newer one's.
	ErrVersion = errors.New("sealed in a format this ferry does not know; run a newer ferry")
)

// Key seals and opens secrets under one cluster key.
type Key struct{ aead cipher.AEAD }

// NewKey derives the sealing key from a cluster key of at least MinKeySize bytes.
func NewKey(clusterKey []byte) (*Key, error) {
	if len(clusterKey) < MinKeySize {
		return nil, fmt.Errorf("cluster key has %d bytes; want at least %d", len(clusterKey), MinKeySize)
	}
	k, err := hkdf.Key(sha256.New, clusterKey, nil, hkdfInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead}, nil
}

// Seal seals the secret called name. Random nonces bound a key to 2³² seals, far beyond the
// handful of secrets a cluster ever puts in its database.
func (k *Key) Seal(name string, secret []byte) []byte {
	out := make([]byte, 1, 1+k.aead.Overhead()+len(secret))
	out[0] = version1
	return k.aead.Seal(out, nil, secret, additionalData(out[0], name))
}

// Open opens a value that Seal sealed for name. The value comes from the database, where
// anyone who can write it may have put anything: every failure is ErrOpen or ErrVersion.
func (k *Key) Open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, ErrOpen
	}
	if sealed[0] != version1 {
		return nil, fmt.Errorf("version %d: %w", sealed[0], ErrVersion)
	}
	if len(sealed) < 1+k.aead.Overhead() {
		return nil, ErrOpen
	}
	secret, err := k.aead.Open(nil, nil, sealed[1:], additionalData(sealed[0], name))
	if err != nil {
		return nil, ErrOpen
	}
	return secret, nil
}

// additionalData is what is authenticated along with a secret: its format version and name.
func additionalData(version byte, name string) []byte {
	return append([]byte{version}, name...)
}
