package e2e

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fastKDFFerry builds a ferry that encrypts keys at libsodium's least scrypt cost (16 MiB)
// rather than minisign's own (1 GiB, seconds per key, minutes under the race detector). Only
// the cost written into new keys differs: decrypting follows the cost in the key, so the
// ferryBin of TestMain signs with the keys this one makes.
func fastKDFFerry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry-fastkdf")
	args := []string{"build", "-o", bin, "-ldflags=-X github.com/ferryhq/ferry/signing.keyKDF=interactive"}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "../cmd/ferry")...).CombinedOutput(); err != nil {
		t.Fatalf("build ferry with the fast KDF: %v\n%s", err, out)
	}
	return bin
}

// keyEnv is the environment without any password or key directory of the developer's own.
func keyEnv(keyDir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_KEY_PASSWORD=") && !strings.HasPrefix(kv, "FERRY_KEY_DIR=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "FERRY_KEY_DIR="+keyDir), extra...)
}

// ferryIn runs bin with env and stdin not a terminal, and returns stdout, stderr and the exit code.
func ferryIn(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// keyKDF is the KDF algorithm in a minisign secret key file: "Sc" (scrypt) when it is
// encrypted, two zero bytes when not. It also checks the file's mode.
func keyKDF(t *testing.T, file string) string {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", file, fi.Mode().Perm())
	}
	text, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	b, err := base64.StdEncoding.DecodeString(lines[len(lines)-1])
	if err != nil || len(b) != 158 || string(b[:2]) != "Ed" || string(b[4:6]) != "B2" {
		t.Fatalf("%s is not a minisign secret key: %v\n%s", file, err, text)
	}
	return string(b[2:4])
}

// bundleToSign builds a release bundle with the real CLI.
func bundleToSign(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: hello\nversion: 1.4.0\nclass: minor\n"), 0o644)
	bundle := filepath.Join(t.TempDir(), "hello-1.4.0.tar.gz")
	if _, stderr, code := ferryIn(t, ferryBin, keyEnv(t.TempDir()), "release", "build", src, "-o", bundle); code != 0 {
		t.Fatalf("release build: exit %d: %s", code, stderr)
	}
	return bundle
}

// oneLine checks that a failed command said exactly want on stderr, one line, and exited code.
func oneLine(t *testing.T, what, stderr string, code int, wantCode int, want string) {
	t.Helper()
	if got := strings.TrimSuffix(stderr, "\n"); code != wantCode || got != want {
		t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", what, code, stderr, wantCode, want)
	}
}

// TestKeyPasswords: key gen encrypts the secret key with FERRY_KEY_PASSWORD, stores it
// unencrypted only when told to with --no-password, and refuses to guess without a terminal;
// release sign needs the password of an encrypted key, and stock minisign verifies.
func TestKeyPasswords(t *testing.T) {
	bundle := bundleToSign(t)

	// No password source: one line, nothing written.
	dir := t.TempDir()
	_, stderr, code := ferryIn(t, ferryBin, keyEnv(dir), "key", "gen")
	oneLine(t, "key gen without a password", stderr, code, 2,
		"ferry: key gen: no password to encrypt the key with: set FERRY_KEY_PASSWORD, or pass --no-password for an unencrypted key")
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("key gen without a password left %v", left)
	}

	// --no-password: unencrypted, and release sign asks no password.
	dir = t.TempDir()
	if out, stderr, code := ferryIn(t, ferryBin, keyEnv(dir), "key", "gen", "--no-password"); code != 0 || !strings.Contains(out, "(unencrypted)") {
		t.Fatalf("key gen --no-password: exit %d: %s%s", code, out, stderr)
	}
	if kdf := keyKDF(t, filepath.Join(dir, "ferry.key")); kdf != "\x00\x00" {
		t.Fatalf("--no-password key has KDF %q", kdf)
	}
	if _, stderr, code := ferryIn(t, ferryBin, keyEnv(dir), "release", "sign", bundle); code != 0 {
		t.Fatalf("release sign with an unencrypted key: exit %d: %s", code, stderr)
	}

	// FERRY_KEY_PASSWORD: encrypted; release sign works with that password only.
	fast := fastKDFFerry(t)
	dir = t.TempDir()
	if out, stderr, code := ferryIn(t, fast, keyEnv(dir, "FERRY_KEY_PASSWORD=x"), "key", "gen"); code != 0 || !strings.Contains(out, "(encrypted)") {
		t.Fatalf("key gen with FERRY_KEY_PASSWORD: exit %d: %s%s", code, out, stderr)
	}
	keyFile := filepath.Join(dir, "ferry.key")
	if kdf := keyKDF(t, keyFile); kdf != "Sc" {
		t.Fatalf("key gen with FERRY_KEY_PASSWORD: KDF %q, want Sc (encrypted)", kdf)
	}
	_, stderr, code = ferryIn(t, ferryBin, keyEnv(dir, "FERRY_KEY_PASSWORD=y"), "release", "sign", bundle)
	oneLine(t, "release sign with a wrong password", stderr, code, 1, "ferry: wrong password for "+keyFile)
	_, stderr, code = ferryIn(t, ferryBin, keyEnv(dir), "release", "sign", bundle)
	oneLine(t, "release sign without a password", stderr, code, 2,
		"ferry: secret key "+keyFile+" is encrypted: set FERRY_KEY_PASSWORD (stdin is not a terminal to ask for it)")
	os.Remove(bundle + ".minisig")
	if _, stderr, code := ferryIn(t, ferryBin, keyEnv(dir, "FERRY_KEY_PASSWORD=x"), "release", "sign", bundle); code != 0 {
		t.Fatalf("release sign with the password: exit %d: %s", code, stderr)
	}
	ms, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("minisign is missing: run the suite with make test")
	}
	if out, err := exec.Command(ms, "-V", "-p", filepath.Join(dir, "ferry.pub"), "-m", bundle).CombinedOutput(); err != nil || !strings.Contains(string(out), "hello@1.4.0") {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}

	// The key exists: refused before any password is needed.
	_, stderr, code = ferryIn(t, ferryBin, keyEnv(dir), "key", "gen")
	if code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("key gen over a key: exit %d: %s", code, stderr)
	}
}

// TestKeyPasswordPrompt: on a terminal, key gen asks for the password twice and release sign
// asks for it once. util-linux's script gives ferry a terminal; what the test types goes in
// ahead of the prompts, as a fast typist's would.
func TestKeyPasswordPrompt(t *testing.T) {
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("util-linux's script, which gives a command a terminal, is missing")
	}
	fast := fastKDFFerry(t)
	bundle := bundleToSign(t)
	onTerminal := func(env []string, typed string, args ...string) (string, int) {
		t.Helper()
		quoted := make([]string, len(args))
		for i, a := range args {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		cmd := exec.Command(scriptBin, "-q", "-e", "-c", strings.Join(quoted, " "), "/dev/null")
		cmd.Env = env
		cmd.Stdin = strings.NewReader(typed)
		out, err := cmd.CombinedOutput()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatal(err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}

	dir := t.TempDir()
	out, code := onTerminal(keyEnv(dir), "one\ntwo\n", fast, "key", "gen")
	if code != 1 || !strings.Contains(out, "ferry: key gen: the passwords differ; no key written") {
		t.Fatalf("key gen with two different passwords: exit %d:\n%s", code, out)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("key gen with two different passwords left %v", left)
	}
	out, code = onTerminal(keyEnv(dir), "tty pw\ntty pw\n", fast, "key", "gen")
	if code != 0 || !strings.Contains(out, "Password for the new key: ") || !strings.Contains(out, "The same password again: ") || !strings.Contains(out, "(encrypted)") {
		t.Fatalf("key gen on a terminal: exit %d:\n%s", code, out)
	}
	keyFile := filepath.Join(dir, "ferry.key")
	if kdf := keyKDF(t, keyFile); kdf != "Sc" {
		t.Fatalf("key gen on a terminal: KDF %q, want Sc (encrypted)", kdf)
	}
	out, code = onTerminal(keyEnv(dir), "tty pw\n", ferryBin, "release", "sign", bundle)
	if code != 0 || !strings.Contains(out, "Password for "+keyFile+": ") || !strings.Contains(out, "wrote "+bundle+".minisig") {
		t.Fatalf("release sign on a terminal: exit %d:\n%s", code, out)
	}
	out, code = onTerminal(keyEnv(dir), "not it\n", ferryBin, "release", "sign", bundle)
	if code != 1 || !strings.Contains(out, "ferry: wrong password for "+keyFile) {
		t.Fatalf("release sign on a terminal, wrong password: exit %d:\n%s", code, out)
	}
}
