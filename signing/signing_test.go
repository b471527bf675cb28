package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"aead.dev/minisign"
)

// stockMinisign is Debian's minisign; `make test` installs it.
func stockMinisign(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("the minisign tool is missing: run the suite with `make test`, which installs it")
	}
	return p
}

func TestFerrySignsMinisignVerifies(t *testing.T) {
	dir := t.TempDir()
	pub, err := GenerateKeyPair(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, SecretKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode %v", fi.Mode().Perm())
	}
	if _, err := GenerateKeyPair(dir, ""); err == nil {
		t.Fatal("GenerateKeyPair overwrote a key")
	}
	file := filepath.Join(dir, "hello.tar.gz")
	os.WriteFile(file, bytes.Repeat([]byte("bundle"), 100000), 0o644)
	priv, err := LoadSecretKey(filepath.Join(dir, SecretKeyFile), "")
	if err != nil {
		t.Fatal(err)
	}
	sigFile, err := SignFile(priv, file, "hello@1.4.0")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(stockMinisign(t), "-V", "-p", filepath.Join(dir, PublicKeyFile), "-m", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello@1.4.0") {
		t.Fatalf("stock minisign refused ferry's signature: %v\n%s", err, out)
	}
	sig, _ := os.ReadFile(sigFile)
	f, _ := os.Open(file)
	defer f.Close()
	if k, err := Verify(f, sig, []minisign.PublicKey{pub}); err != nil || k.ID() != pub.ID() {
		t.Fatalf("Verify: %v", err)
	}
}

func TestMinisignSignsFerryVerifies(t *testing.T) {
	dir := t.TempDir()
	ms := stockMinisign(t)
	pubFile, secFile := filepath.Join(dir, "m.pub"), filepath.Join(dir, "m.key")
	if out, err := exec.Command(ms, "-G", "-W", "-p", pubFile, "-s", secFile).CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "b.tar.gz")
	os.WriteFile(file, []byte("some bundle bytes"), 0o644)
	if out, err := exec.Command(ms, "-S", "-s", secFile, "-m", file).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	pubText, _ := os.ReadFile(pubFile)
	pub, err := ParsePublicKey(string(pubText))
	if err != nil {
		t.Fatal(err)
	}
	// The bare base64 key (what `ferry key trust` takes on the command line) parses too.
	lines := strings.Split(strings.TrimSpace(string(pubText)), "\n")
	if bare, err := ParsePublicKey(lines[len(lines)-1]); err != nil || bare.ID() != pub.ID() {
		t.Fatalf("bare key: %v", err)
	}
	sig, _ := os.ReadFile(file + ".minisig")
	if _, err := Verify(bytes.NewReader([]byte("some bundle bytes")), sig, []minisign.PublicKey{pub}); err != nil {
		t.Fatalf("ferry refused minisign's signature: %v", err)
	}
	// Other bytes, or a key that is not trusted: refused, saying which.
	other, _, _ := minisign.GenerateKey(nil)
	_, err = Verify(bytes.NewReader([]byte("other bytes")), sig, []minisign.PublicKey{other, pub})
	if !errors.Is(err, ErrBadSignature) || !errors.Is(err, ErrMismatch) || errors.Is(err, ErrUntrustedKey) ||
		!strings.HasPrefix(err.Error(), "the signature does not match this file: key "+fmt.Sprintf("%016X", pub.ID())+", which is trusted") {
		t.Fatalf("signature of other bytes: %v", err)
	}
	_, err = Verify(bytes.NewReader([]byte("some bundle bytes")), sig, []minisign.PublicKey{other})
	if !errors.Is(err, ErrBadSignature) || !errors.Is(err, ErrUntrustedKey) || errors.Is(err, ErrMismatch) ||
		err.Error() != fmt.Sprintf("signature does not verify: it was made by key %016X, which is not trusted", pub.ID()) {
		t.Fatalf("untrusted key: %v", err)
	}
	if _, err := Verify(bytes.NewReader(nil), []byte("garbage"), []minisign.PublicKey{pub}); err == nil {
		t.Fatal("garbage signature accepted")
	}
	// A secret key made by stock minisign signs for ferry too.
	priv, err := LoadSecretKey(secFile, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignFile(priv, file, "hello@1.0.0"); err != nil {
		t.Fatal(err)
	}
	sig, _ = os.ReadFile(file + ".minisig")
	if _, err := Verify(bytes.NewReader([]byte("some bundle bytes")), sig, []minisign.PublicKey{pub}); err != nil {
		t.Fatalf("signature by minisign's key through ferry: %v", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add("RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3")
	f.Add("untrusted comment: x\nRWQ")
	f.Fuzz(func(t *testing.T, s string) {
		if k, err := ParsePublicKey(s); err == nil {
			if _, err := k.MarshalText(); err != nil {
				t.Fatalf("accepted key does not marshal: %v", err)
			}
		}
	})
}

func TestMain(m *testing.M) {
	// Keys made here are encrypted at libsodium's least scrypt cost: minisign's own takes 1 GiB
	// and seconds per key (minutes under the race detector). TestKDFCostsAreMinisigns checks
	// both costs, and TestMinisignEncryptedKeyLoads decrypts a key at minisign's cost.
	keyKDF = "interactive"
	os.Exit(m.Run())
}

// keyHeader decodes a secret key file's base64 line.
func keyHeader(t *testing.T, file string) []byte {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeKey(text)
	if err != nil || len(b) != keySize {
		t.Fatalf("%s: %v, %d bytes", file, err, len(b))
	}
	return b
}

func TestEncryptedKeyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pub, err := GenerateKeyPair(dir, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	secFile := filepath.Join(dir, SecretKeyFile)
	// minisign's header: signature "Ed", KDF "Sc" (scrypt), checksum "B2".
	if h := keyHeader(t, secFile); string(h[:6]) != "EdScB2" {
		t.Fatalf("header %q, want EdScB2", h[:6])
	}
	text, _ := os.ReadFile(secFile)
	if !minisign.IsEncrypted(text) {
		t.Fatal("aead.dev/minisign does not see the key as encrypted")
	}
	asked := 0
	priv, err := LoadSecretKeyFunc(secFile, func() (string, error) { asked++; return "correct horse", nil })
	if err != nil || asked != 1 {
		t.Fatalf("load: %v, password asked %d times", err, asked)
	}
	if priv.ID() != pub.ID() {
		t.Fatalf("decrypted key %X, public key %X", priv.ID(), pub.ID())
	}
	file := filepath.Join(dir, "b.tar.gz")
	os.WriteFile(file, []byte("bundle"), 0o644)
	sigFile, err := SignFile(priv, file, "hello@1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(sigFile)
	if _, err := Verify(bytes.NewReader([]byte("bundle")), sig, []minisign.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}

	// Stock minisign decrypts ferry's key (it reads the password from stdin when that is not a
	// terminal) and signs with it; ferry verifies.
	ms := exec.Command(stockMinisign(t), "-S", "-s", secFile, "-m", file, "-t", "by minisign")
	ms.Stdin = strings.NewReader("correct horse\n")
	if out, err := ms.CombinedOutput(); err != nil {
		t.Fatalf("stock minisign refused ferry's encrypted key: %v\n%s", err, out)
	}
	sig, _ = os.ReadFile(sigFile)
	if _, err := Verify(bytes.NewReader([]byte("bundle")), sig, []minisign.PublicKey{pub}); err != nil || !bytes.Contains(sig, []byte("by minisign")) {
		t.Fatalf("minisign's signature with ferry's key: %v\n%s", err, sig)
	}
	ms = exec.Command(stockMinisign(t), "-S", "-s", secFile, "-m", file)
	ms.Stdin = strings.NewReader("wrong\n")
	if out, err := ms.CombinedOutput(); err == nil {
		t.Fatalf("stock minisign took a wrong password:\n%s", out)
	}

	// A wrong password, or none, is refused with one clear line.
	_, err = LoadSecretKey(secFile, "wrong horse")
	if !errors.Is(err, ErrWrongPassword) || err.Error() != "wrong password for "+secFile {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := LoadSecretKey(secFile, ""); err == nil || err.Error() != "secret key "+secFile+" is encrypted and no password was given" {
		t.Fatalf("no password: %v", err)
	}
	// The password source's own error comes back as it is.
	errNoTTY := errors.New("no terminal")
	if _, err := LoadSecretKeyFunc(secFile, func() (string, error) { return "", errNoTTY }); err != errNoTTY {
		t.Fatalf("password source failing: %v", err)
	}
}

func TestUnencryptedKeyAsksNoPassword(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateKeyPair(dir, ""); err != nil {
		t.Fatal(err)
	}
	secFile := filepath.Join(dir, SecretKeyFile)
	if h := keyHeader(t, secFile); h[2] != 0 || h[3] != 0 {
		t.Fatalf("KDF bytes %q, want none", h[2:4])
	}
	if _, err := LoadSecretKeyFunc(secFile, func() (string, error) {
		t.Fatal("password asked for an unencrypted key")
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	// Nor is a password asked for a key that cannot be written.
	if _, err := GenerateKeyPairFunc(dir, func() (string, error) {
		t.Fatal("password asked though a key is there")
		return "", nil
	}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second key: %v", err)
	}
}

func TestDamagedEncryptedKey(t *testing.T) {
	dir := t.TempDir()
	secFile := filepath.Join(dir, "bad.key")
	// An encrypted key cut short is a broken file, not a wrong password.
	b := make([]byte, 60)
	copy(b, "EdScB2")
	os.WriteFile(secFile, []byte("untrusted comment: x\n"+base64.StdEncoding.EncodeToString(b)+"\n"), 0o600)
	if _, err := LoadSecretKey(secFile, "pw"); err == nil || errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "not a minisign secret key") {
		t.Fatalf("short key: %v", err)
	}
	// One asking for more scrypt work than minisign ever does is refused before any.
	b = make([]byte, keySize)
	copy(b, "EdScB2")
	binary.LittleEndian.PutUint64(b[keyMemAt:], 1<<40)
	os.WriteFile(secFile, []byte("untrusted comment: x\n"+base64.StdEncoding.EncodeToString(b)+"\n"), 0o600)
	if _, err := LoadSecretKey(secFile, "pw"); err == nil || !strings.Contains(err.Error(), "beyond minisign's limits") {
		t.Fatalf("costly key: %v", err)
	}
}

func TestSecretKeyModeWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0, 0o277} {
		old := syscall.Umask(mask)
		dir := filepath.Join(t.TempDir(), "keys")
		_, err := GenerateKeyPair(dir, "pw")
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]os.FileMode{dir: 0o700 &^ os.FileMode(mask), filepath.Join(dir, SecretKeyFile): 0o600} {
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != want {
				t.Errorf("umask %#o: %s: %v, mode %v, want %v", mask, f, err, fi.Mode().Perm(), want)
			}
		}
	}
}

// TestKDFCostsAreMinisigns: ferry encrypts keys at minisign's own cost, and the scrypt
// parameters used for each cost are the ones libsodium (so minisign, and aead.dev/minisign
// when decrypting) derives from the opslimit and memlimit written in the key.
func TestKDFCostsAreMinisigns(t *testing.T) {
	keyKDF = "sensitive"
	c := kdfCost()
	keyKDF = "interactive"
	// crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE and MEMLIMIT_SENSITIVE, which
	// minisign's -G uses.
	if c.ops != 33554432 || c.mem != 1073741824 {
		t.Fatalf("default cost %+v is not minisign's", c)
	}
	for _, c := range []scryptCost{sensitiveCost, interactiveCost} {
		if n, r, p := pickParams(c.ops, c.mem); n != c.n || r != c.r || p != c.p {
			t.Errorf("cost %+v: libsodium derives N=%d r=%d p=%d", c, n, r, p)
		}
	}
}

// pickParams is libsodium's pickparams (crypto_pwhash/scryptsalsa208sha256/pwhash_scryptsalsa208sha256.c).
func pickParams(ops, mem uint64) (n, r, p int) {
	if ops < 32768 {
		ops = 32768
	}
	r = 8
	var maxN uint64
	if ops < mem/32 {
		p = 1
		maxN = ops / (uint64(r) * 4)
	} else {
		maxN = mem / (uint64(r) * 128)
	}
	log2 := 1
	for ; log2 < 63; log2++ {
		if uint64(1)<<log2 > maxN/2 {
			break
		}
	}
	if ops >= mem/32 {
		maxrp := (ops / 4) / (uint64(1) << log2)
		if maxrp > 0x3fffffff {
			maxrp = 0x3fffffff
		}
		p = int(maxrp) / r
	}
	return 1 << log2, r, p
}

// TestMinisignEncryptedKeyLoads: a key stock minisign encrypted (at its own, full cost) loads
// in ferry with its password and signs what minisign verifies.
func TestMinisignEncryptedKeyLoads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ms := stockMinisign(t)
	pubFile, secFile := filepath.Join(dir, "m.pub"), filepath.Join(dir, "m.key")
	gen := exec.Command(ms, "-G", "-p", pubFile, "-s", secFile)
	gen.Stdin = strings.NewReader("s3cret\ns3cret\n")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v\n%s", err, out)
	}
	if h := keyHeader(t, secFile); string(h[:6]) != "EdScB2" {
		t.Fatalf("minisign's key header %q", h[:6])
	}
	priv, err := LoadSecretKey(secFile, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.tar.gz")
	os.WriteFile(file, []byte("bundle"), 0o644)
	if _, err := SignFile(priv, file, "hello@2.0.0"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ms, "-V", "-p", pubFile, "-m", file).CombinedOutput(); err != nil || !strings.Contains(string(out), "hello@2.0.0") {
		t.Fatalf("minisign refused ferry's signature with minisign's key: %v\n%s", err, out)
	}
}
