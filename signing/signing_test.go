package signing

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// Other bytes, or a key that is not trusted: refused.
	if _, err := Verify(bytes.NewReader([]byte("other bytes")), sig, []minisign.PublicKey{pub}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("signature of other bytes: %v", err)
	}
	other, _, _ := minisign.GenerateKey(nil)
	if _, err := Verify(bytes.NewReader([]byte("some bundle bytes")), sig, []minisign.PublicKey{other}); !errors.Is(err, ErrBadSignature) {
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
