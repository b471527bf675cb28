// Package hello is Ferry's example app: a tiny HTTP service that says which release of it runs
// where, with a health endpoint for Ferry's checks. `ferry dev` deploys it to its demo fleet;
// examples/hello/cmd/hello is the same service as a program of its own, to build into a
// release bundle with examples/hello/ferry.yaml.
package hello

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Main runs the service until ctx ends. It listens on 127.0.0.1 at the port in
// FERRY_PORT_HTTP (the port the agent gave the release's port named http); HELLO_VERSION (else
// FERRY_VERSION) and FERRY_NODE (else the host name) say what it answers. HELLO_BROKEN set to
// "start" makes it exit at once, and to "health" makes /healthz fail: the two ways a bad
// release shows, for demos of a rollback.
func Main(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	port := getenv("FERRY_PORT_HTTP")
	if port == "" {
		return errors.New("FERRY_PORT_HTTP is not set: run me under a Ferry agent, or set it")
	}
	version, node, broken := getenv("HELLO_VERSION"), getenv("FERRY_NODE"), getenv("HELLO_BROKEN")
	if version == "" {
		version = getenv("FERRY_VERSION") // the agent's name for the release it runs
	}
	if node == "" {
		node, _ = os.Hostname()
	}
	if broken == "start" {
		return fmt.Errorf("hello %s: broken on purpose (HELLO_BROKEN=start)", version)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		return err
	}
	return Serve(ctx, l, version, node, broken, stdout)
}

// Serve answers on l until ctx ends: what Main does once it listens.
func Serve(ctx context.Context, l net.Listener, version, node, broken string, stdout io.Writer) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s\n", version, node)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if broken == "health" {
			http.Error(w, "unhealthy on purpose (HELLO_BROKEN=health)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Fprintf(stdout, "hello %s listening on %s\n", version, l.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	fmt.Fprintf(stdout, "hello %s stopped\n", version)
	return nil
}
