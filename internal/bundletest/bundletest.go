// Package bundletest builds small release bundles for tests.
package bundletest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferryhq/ferry/release"
)

// Build returns the bytes of a bundle of app@version (class minor) holding one file, payload.
func Build(t testing.TB, app, version, payload string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, release.ManifestName), []byte(fmt.Sprintf("app: %s\nversion: %q\nclass: minor\n", app, version)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload"), []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := release.Build(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
