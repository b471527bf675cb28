// Package signing makes and checks the minisign (ed25519) keys and signatures that releases
// carry, in minisign's own formats, so bundles can be signed and verified with the stock
// minisign tool as well as with ferry.
package signing

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/scrypt"
)

// File names of a key pair made by GenerateKeyPair.
const (
	SecretKeyFile = "ferry.key"
	PublicKeyFile = "ferry.pub"
)

// ErrWrongPassword is returned (wrapped, naming the key file) when a password does not decrypt
// a secret key.
var ErrWrongPassword = errors.New("wrong password")

// GenerateKeyPair writes a new key pair into dir: the secret key, mode 0600 whatever the umask,
// and the public key. The secret key is encrypted with password as `minisign -G` does; an empty
// password is the caller's explicit choice of an unencrypted key, as `minisign -G -W` makes. It
// refuses to overwrite a key.
func GenerateKeyPair(dir, password string) (minisign.PublicKey, error) {
	return GenerateKeyPairFunc(dir, func() (string, error) { return password, nil })
}

// GenerateKeyPairFunc is GenerateKeyPair asking for the password (by calling password) only once
// dir is known to hold no key, so nobody types a password for a key that cannot be written.
func GenerateKeyPairFunc(dir string, password func() (string, error)) (minisign.PublicKey, error) {
	var pub minisign.PublicKey
	secFile, pubFile := filepath.Join(dir, SecretKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, f := range []string{secFile, pubFile} {
		if _, err := os.Lstat(f); err == nil {
			return pub, fmt.Errorf("%s already exists; move it away to make a new key", f)
		}
	}
	pw, err := password()
	if err != nil {
		return pub, err
	}
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		return pub, err
	}
	var sec []byte
	if pw == "" {
		sec, err = priv.MarshalText()
		sec = append(sec, '\n')
	} else {
		sec, err = encryptKey(pw, priv, kdfCost())
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
	if err := writeNew(secFile, sec, 0o600); err != nil {
		return pub, err
	}
	if err := writeNew(pubFile, append(pubText, '\n'), 0o644); err != nil {
		os.Remove(secFile)
		return pub, err
	}
	return pub, nil
}

// writeNew writes a file that must not exist yet. The mode is set explicitly, so the umask can
// neither widen nor narrow it.
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; move it away to make a new key", name)
	}
	if err != nil {
		return err
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

// LoadSecretKey reads a minisign secret key (made by ferry or by minisign -G). An encrypted key
// is decrypted with password; an empty password means the key must be unencrypted.
func LoadSecretKey(file, password string) (minisign.PrivateKey, error) {
	return LoadSecretKeyFunc(file, func() (string, error) {
		if password == "" {
			return "", fmt.Errorf("secret key %s is encrypted and no password was given", file)
		}
		return password, nil
	})
}

// LoadSecretKeyFunc reads a minisign secret key, asking for the password (by calling password)
// only when the key is encrypted. A password that does not decrypt the key gives an error that
// wraps ErrWrongPassword and reads "wrong password for FILE".
func LoadSecretKeyFunc(file string, password func() (string, error)) (minisign.PrivateKey, error) {
	var k minisign.PrivateKey
	b, err := os.ReadFile(file)
	if err != nil {
		return k, err
	}
	if !minisign.IsEncrypted(b) {
		if err := k.UnmarshalText(b); err != nil {
			return k, fmt.Errorf("secret key %s: %v", file, err)
		}
		return k, nil
	}
	if err := checkEncryptedKey(b); err != nil {
		return k, fmt.Errorf("secret key %s: %v", file, err)
	}
	pw, err := password()
	if err != nil {
		return k, err
	}
	// The key is well formed, so the only way left to fail is a checksum that does not match
	// what the password decrypts.
	if k, err = minisign.DecryptKey(pw, b); err != nil {
		return k, fmt.Errorf("%w for %s", ErrWrongPassword, file)
	}
	return k, nil
}

// The layout of a minisign secret key, once its base64 is decoded: signature algorithm "Ed",
// KDF algorithm ("Sc" for scrypt, zero when unencrypted), checksum algorithm "B2", the scrypt
// salt, opslimit and memlimit, then - encrypted by the KDF's key stream when there is one - the
// key ID, the Ed25519 key and a BLAKE2b-256 checksum of "Ed", key ID and key.
const (
	keySize        = 158
	keySaltAt      = 6
	keyOpsAt       = 38
	keyMemAt       = 46
	keySecretAt    = 54
	keyChecksumAt  = 126
	maxScryptOps   = 1 << 25 // libsodium's sensitive limits, the most minisign asks for
	maxScryptMem   = 1 << 30
	encryptComment = "untrusted comment: minisign encrypted secret key\n"
)

// checkEncryptedKey checks what can be checked of an encrypted key without its password.
func checkEncryptedKey(text []byte) error {
	b, err := decodeKey(text)
	if err != nil {
		return err
	}
	if len(b) != keySize || string(b[0:2]) != "Ed" || string(b[2:4]) != "Sc" || string(b[4:6]) != "B2" {
		return errors.New("not a minisign secret key")
	}
	if binary.LittleEndian.Uint64(b[keyOpsAt:]) > maxScryptOps || binary.LittleEndian.Uint64(b[keyMemAt:]) > maxScryptMem {
		return errors.New("the key's scrypt cost is beyond minisign's limits")
	}
	return nil
}

// decodeKey decodes the base64 line of a minisign key file.
func decodeKey(text []byte) ([]byte, error) {
	s := strings.TrimSpace(string(text))
	if c, rest, ok := strings.Cut(s, "\n"); ok && strings.HasPrefix(c, "untrusted comment:") {
		s = rest
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not a minisign secret key")
	}
	return b, nil
}

// scryptCost is a KDF cost: libsodium's opslimit and memlimit, written into the key, and the
// scrypt parameters libsodium (and so minisign and aead.dev/minisign) derive from them.
type scryptCost struct {
	ops, mem uint64
	n, r, p  int
}

var (
	// sensitiveCost is what minisign itself uses: 1 GiB of memory and seconds of work, so a
	// stolen key file resists guessing.
	sensitiveCost = scryptCost{ops: 1 << 25, mem: 1 << 30, n: 1 << 20, r: 8, p: 1}
	// interactiveCost is libsodium's least (16 MiB), for tests only.
	interactiveCost = scryptCost{ops: 1 << 19, mem: 1 << 24, n: 1 << 14, r: 8, p: 1}
)

// keyKDF picks the cost of the keys ferry encrypts. Only tests change it, in the package or with
// -ldflags '-X github.com/ferryhq/ferry/signing.keyKDF=interactive' in a test build of ferry;
// decryption always uses the cost written in the key.
var keyKDF = "sensitive"

func kdfCost() scryptCost {
	if keyKDF == "interactive" {
		return interactiveCost
	}
	return sensitiveCost
}

// encryptKey encrypts priv with password in minisign's format. aead.dev/minisign's EncryptKey
// writes the same bytes but always at the sensitive cost, which tests cannot afford.
func encryptKey(password string, priv minisign.PrivateKey, c scryptCost) ([]byte, error) {
	text, err := priv.MarshalText()
	if err != nil {
		return nil, err
	}
	b, err := decodeKey(text)
	if err != nil || len(b) != keySize {
		return nil, errors.New("minisign: unexpected private key encoding")
	}
	defer clear(b)
	copy(b[2:4], "Sc")
	if _, err := rand.Read(b[keySaltAt:keyOpsAt]); err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(b[keyOpsAt:], c.ops)
	binary.LittleEndian.PutUint64(b[keyMemAt:], c.mem)
	sum := blake2b.Sum256(append([]byte("Ed"), b[keySecretAt:keyChecksumAt]...))
	copy(b[keyChecksumAt:], sum[:])
	stream, err := scrypt.Key([]byte(password), b[keySaltAt:keyOpsAt], c.n, c.r, c.p, keySize-keySecretAt)
	if err != nil {
		return nil, err
	}
	for i, x := range stream {
		b[keySecretAt+i] ^= x
	}
	return []byte(encryptComment + base64.StdEncoding.EncodeToString(b) + "\n"), nil
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

// ErrBadSignature is returned when no trusted key verifies a signature. The error also matches
// ErrUntrustedKey or ErrMismatch, which say why; it is a *SignatureError.
var ErrBadSignature = errors.New("signature does not verify against any trusted key")

// ErrUntrustedKey means the signature was made by a key that is not among the trusted ones.
var ErrUntrustedKey = errors.New("signed by a key that is not trusted")

// ErrMismatch means a trusted key made the signature, but not of these bytes: the file changed
// after it was signed, or the signature is another file's.
var ErrMismatch = errors.New("the signature does not match this file")

// SignatureError is a signature that does not verify: which key made it, and why (ErrUntrustedKey
// or ErrMismatch). It matches ErrBadSignature too.
type SignatureError struct {
	KeyID  uint64
	Reason error
}

func (e *SignatureError) Error() string {
	if e.Reason == ErrMismatch {
		return fmt.Sprintf("%v: key %016X, which is trusted, signed other bytes (the file changed after it was signed, or the signature is another file's)", ErrMismatch, e.KeyID)
	}
	return fmt.Sprintf("signature does not verify: it was made by key %016X, which is not trusted", e.KeyID)
}

// Is makes errors.Is match ErrBadSignature and the reason.
func (e *SignatureError) Is(target error) bool {
	return target == ErrBadSignature || target == e.Reason
}

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
	reason := ErrUntrustedKey
	for _, k := range trusted {
		if k.ID() != sig.KeyID {
			continue
		}
		if v.mr.Verify(k, signature) {
			return k, nil
		}
		reason = ErrMismatch
	}
	return minisign.PublicKey{}, &SignatureError{KeyID: sig.KeyID, Reason: reason}
}
