package hello

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/release"
)

// serve starts the service on a listener of its own and returns its address and a stop that
// waits for it to end.
func serve(t *testing.T, version, node, broken string) (string, func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, version, node, broken, io.Discard) }()
	return "http://" + l.Addr().String(), func() error { cancel(); return <-done }
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHello(t *testing.T) {
	addr, stop := serve(t, "1.2.0", "ams-01", "")
	if code, body := get(t, addr+"/"); code != 200 || body != "hello 1.2.0 from ams-01\n" {
		t.Errorf("GET /: %d %q", code, body)
	}
	if code, _ := get(t, addr+"/healthz"); code != 200 {
		t.Errorf("GET /healthz: %d", code)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}

	addr, stop = serve(t, "1.1.0", "ams-01", "health")
	if code, _ := get(t, addr+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz of a release broken on purpose: %d", code)
	}
	stop()

	env := map[string]string{"FERRY_PORT_HTTP": "1", "HELLO_VERSION": "1.1.0", "HELLO_BROKEN": "start"}
	if err := Main(context.Background(), func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "broken on purpose") {
		t.Errorf("a release broken at start: %v", err)
	}
	if err := Main(context.Background(), func(string) string { return "" }, io.Discard); err == nil {
		t.Error("no FERRY_PORT_HTTP: no error")
	}
}

// The example's manifest is one Ferry accepts.
func TestManifest(t *testing.T) {
	b, err := os.ReadFile("ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.ParseManifest(b)
	if err != nil || m.App != "hello" || len(m.Processes) != 1 || len(m.Checks) != 1 {
		t.Fatalf("ferry.yaml: %+v %v", m, err)
	}
}
