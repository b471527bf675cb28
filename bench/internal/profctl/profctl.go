// Package profctl builds the server a harness runs (bench/profserver when it profiles) and drives
// bench/profserver's profile control port.
package profctl

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
)

// Build returns the ferry binary a harness runs: bin when given, else one built into dir —
// bench/profserver when profile names a directory for profiles (made here), else cmd/ferry.
func Build(dir, bin, profile string) (string, error) {
	pkg := "./cmd/ferry"
	if profile != "" {
		pkg = "./bench/profserver"
		if err := os.MkdirAll(profile, 0o700); err != nil {
			return "", err
		}
	}
	if bin != "" {
		return bin, nil
	}
	bin = filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v: %s", err, out)
	}
	return bin, nil
}

// Start starts a CPU profile of the server into file.
func Start(control, file string) error { return post(control, "/start?file="+url.QueryEscape(file)) }

// Stop stops the running CPU profile.
func Stop(control string) error { return post(control, "/stop") }

// Heap writes a heap profile, taken after a GC, into file.
func Heap(control, file string) error { return post(control, "/heap?file="+url.QueryEscape(file)) }

func post(control, path string) error {
	resp, err := http.Post("http://"+control+path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("profile control %s: %s: %s", path, resp.Status, b)
	}
	return nil
}

// Modes returns the transports a harness's -transport value runs, in order.
func Modes(transport string) ([]string, error) {
	switch transport {
	case "plain", "tls":
		return []string{transport}, nil
	case "both":
		return []string{"plain", "tls"}, nil
	}
	return nil, fmt.Errorf("-transport must be plain, tls or both")
}
