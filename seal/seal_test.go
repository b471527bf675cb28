package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func newKey(t testing.TB) *Key {
	t.Helper()
	b := make([]byte, MinKeySize)
	rand.Read(b)
	k, err := NewKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := newKey(t)
	for _, secret := range [][]byte{nil, {0}, []byte("session secret"), bytes.Repeat([]byte{0xff}, 4096)} {
		sealed := k.Seal("session", secret)
		if len(sealed) != 1+12+len(secret)+16 || sealed[0] != 1 {
			t.Fatalf("sealed %d bytes into %d starting %d; want version 1, nonce, ciphertext and tag", len(secret), len(sealed), sealed[0])
		}
		if len(secret) > 4 && bytes.Contains(sealed, secret) {
			t.Fatal("the sealed value holds the secret in the clear")
		}
		got, err := k.Open("session", sealed)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Open = %q, %v; want %q", got, err, secret)
		}
	}
	// Each seal draws its own nonce: the same secret seals differently every time.
	if bytes.Equal(k.Seal("ca", []byte("x")), k.Seal("ca", []byte("x"))) {
		t.Fatal("two seals of one secret are equal")
	}
}

// The sealing key is derived from the cluster key alone: another process (replica) with the same
// cluster key opens what this one sealed.
func TestSameClusterKeyOpens(t *testing.T) {
	ck := bytes.Repeat([]byte("k"), 40)
	a, _ := NewKey(ck)
	b, _ := NewKey(bytes.Clone(ck))
	if got, err := b.Open("ca", a.Seal("ca", []byte("pem"))); err != nil || string(got) != "pem" {
		t.Fatalf("Open under the same cluster key = %q, %v", got, err)
	}
}

func TestRefused(t *testing.T) {
	k := newKey(t)
	sealed := k.Seal("session", []byte("secret"))
	flipped := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	for _, tt := range []struct {
		what   string
		key    *Key
		name   string
		sealed []byte
		want   error
	}{
		{"another cluster key", newKey(t), "session", sealed, ErrOpen},
		{"another name", k, "ca", sealed, ErrOpen},
		{"a name that extends it", k, "session\x00", sealed, ErrOpen},
		{"an altered nonce", k, "session", flipped(1), ErrOpen},
		{"an altered ciphertext", k, "session", flipped(14), ErrOpen},
		{"an altered tag", k, "session", flipped(len(sealed) - 1), ErrOpen},
		{"a cut tag", k, "session", sealed[:len(sealed)-1], ErrOpen},
		{"nothing", k, "session", nil, ErrOpen},
		{"the version byte alone", k, "session", sealed[:1], ErrOpen},
		{"an unknown version", k, "session", append([]byte{2}, sealed[1:]...), ErrVersion},
		{"version 0", k, "session", append([]byte{0}, sealed[1:]...), ErrVersion},
	} {
		got, err := tt.key.Open(tt.name, tt.sealed)
		if !errors.Is(err, tt.want) || got != nil {
			t.Errorf("Open with %s = %q, %v; want %v", tt.what, got, err, tt.want)
		}
	}
}

func TestShortClusterKeyRefused(t *testing.T) {
	if _, err := NewKey(make([]byte, MinKeySize-1)); err == nil {
		t.Fatal("a 31-byte cluster key was taken")
	}
}

// Sealed values come from the database, which others may write: Open must refuse anything that
// Seal did not make for that name, without panicking, and with one of the package's errors.
func FuzzOpen(f *testing.F) {
	k, err := NewKey(bytes.Repeat([]byte{7}, MinKeySize))
	if err != nil {
		f.Fatal(err)
	}
	sealed := k.Seal("session", []byte("secret"))
	f.Add("session", sealed)
	f.Add("ca", sealed)
	f.Add("session", sealed[:13])
	f.Add("session", append([]byte{2}, sealed[1:]...))
	f.Add("", []byte{})
	f.Add("", []byte{1})
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		got, err := k.Open(name, data)
		switch {
		case err == nil:
			// Only a value Seal made for this name opens; it opens for no other name.
			if _, err := k.Open(name+"x", data); !errors.Is(err, ErrOpen) {
				t.Fatalf("a value sealed for %q opened for %q too: %v", name, name+"x", err)
			}
		case !errors.Is(err, ErrOpen) && !errors.Is(err, ErrVersion):
			t.Fatalf("Open error %v is neither ErrOpen nor ErrVersion", err)
		case got != nil:
			t.Fatalf("Open failed (%v) and returned %q", err, got)
		}
		// And whatever bytes a secret holds, they come back whole.
		if back, err := k.Open(name, k.Seal(name, data)); err != nil || !bytes.Equal(back, data) {
			t.Fatalf("round trip of %q under %q = %q, %v", data, name, back, err)
		}
	})
}
