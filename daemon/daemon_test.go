package daemon

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/cli"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/output"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/server"
)

// ferry runs the command line as cmd/ferry wires it, to the end, and returns its output and exit
// status.
func ferry(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := cli.Run(context.Background(), args, &out, &errb, Server, Agent, Dev)
	if err != nil {
		errb.WriteString(cli.Message(err) + "\n")
	}
	return out.String(), errb.String(), cli.ExitCode(err)
}

// noEnv keeps the operator's own FERRY_* settings out of a test.
func noEnv(t *testing.T) {
	for _, k := range []string{"FERRY_ADDR", "FERRY_TOKEN", "FERRY_CACERT", "FERRY_CLIENT_CERT", "FERRY_CLIENT_KEY", "FERRY_DB", "FERRY_BLOBS"} {
		t.Setenv(k, "")
	}
}

// The daemons' help is the golden files': they show their own flags, and of the operator's only
// those a daemon reads (the agent's --server, --token, --ca-cert...), described for it.
func TestHelpUnchanged(t *testing.T) {
	for _, verb := range []string{"root", "server", "agent", "dev"} {
		args := []string{verb, "--help"}
		if verb == "root" {
			args = args[1:]
		}
		out, errOut, code := ferry(t, args...)
		want, err := os.ReadFile(filepath.Join("testdata", "help-"+verb+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 || out != string(want) {
			t.Errorf("ferry %s: exit %d, stderr %q, help differs:\n%s\nwant:\n%s", strings.Join(args, " "), code, errOut, out, want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	noEnv(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"server"}, "ferry: server: --data DIR is required\n"},
		{[]string{"server", "--data", dir, "--public-rate", "fast"}, `ferry: invalid --public-rate "fast": want a positive rate like 20/s` + "\n"},
		{[]string{"server", "--data", dir, "--log-level", "loud"}, `ferry: invalid --log-level "loud": want debug, info, warn or error` + "\n"},
		{[]string{"server", "extra"}, `ferry: server: takes no arguments, got "extra"` + "\n"},
		{[]string{"agent", "--server", "https://127.0.0.1:1"}, "ferry: agent: --data DIR is required\n"},
		{[]string{"agent", "--data", dir, "--labels", "role"}, "ferry: "},
		{[]string{"agent", "--data", dir, "--trust", "not-a-key"}, "ferry: agent --trust: not-a-key is neither a public key file nor a public key"},
		{[]string{"agent", "--data", dir, "--probe-address", "peer.example"}, `ferry: agent --probe-address: invalid probe host "peer.example": want an IP address peers can reach, like 192.0.2.10` + "\n"},
		{[]string{"dev", "--sites", "0"}, "ferry: dev: --sites must be 1 to 8\n"},
		{[]string{"dev", "--agents", "1001"}, "ferry: dev: --agents must be 0 to 1000\n"},
		{[]string{"server", "--data", dir, "--token", "x"}, "ferry: server: --token is a flag of the operator's verbs; ferry server does not take it\n"},
		{[]string{"--server", "https://127.0.0.1:1", "server", "--data", dir}, "ferry: server: --server is a flag of the operator's verbs; ferry server does not take it\n"},
		{[]string{"dev", "-o", "json"}, "ferry: dev: --output is a flag of the operator's verbs; ferry dev does not take it\n"},
		{[]string{"agent", "--data", dir, "-o", "json"}, "ferry: agent: --output is a flag of the operator's verbs; ferry agent does not take it\n"},
	} {
		out, errOut, code := ferry(t, tt.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused commands wrote %d files in --data", len(entries))
	}
}

// running is a verb running until its context is cancelled.
type running struct {
	stdout, stderr *output.Lines
	cancel         context.CancelFunc
	done           chan error
}

func start(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: output.New(), stderr: output.New(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- cli.Run(ctx, args, r.stdout, r.stderr, Server, Agent, Dev) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the verb, as Ctrl-C does, and fails the test unless it ends cleanly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("stopped with %v\n%s", err, r.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Error("did not stop within 30s of its context")
	}
}

func adminClient(t *testing.T, addr, data string) *client.Client {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(addr, strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.UseTLS(pki.ClientOptions{CAFile: filepath.Join(data, "tls", "ca.pem")}); err != nil {
		t.Fatal(err)
	}
	return c
}

// ferry server serves the API with the collector tuned, operator verbs work against it, and
// ferry agent enrolls with it; both stop cleanly when cancelled.
func TestServerAndAgent(t *testing.T) {
	noEnv(t)
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC")
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	data := t.TempDir()
	srv := start(t, "server", "--data", data, "--listen", "127.0.0.1:0")
	addr := "https://" + srv.stderr.WaitMatch(t, regexp.MustCompile(`msg=serving addr=(\S+)`))
	if gc := debug.SetGCPercent(100); gc != server.GCPercent {
		t.Errorf("ferry server runs the collector at GOGC %d, want %d", gc, server.GCPercent)
	}
	if !strings.Contains(srv.stderr.String(), "admin token") {
		t.Errorf("server log does not say where the admin token is:\n%s", srv.stderr.String())
	}
	op := []string{"--server", addr, "--token-file", filepath.Join(data, "admin.token"), "--ca-cert", filepath.Join(data, "tls", "ca.pem")}
	if out, errOut, code := ferry(t, append([]string{"site", "add", "ams", "--tier", "1"}, op...)...); code != 0 {
		t.Fatalf("site add: exit %d: %s%s", code, out, errOut)
	}
	tok, errOut, code := ferry(t, append([]string{"token", "create", "--site", "ams"}, op...)...)
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errOut)
	}

	admin := adminClient(t, addr, data)
	agent := start(t, "agent", "--server", addr, "--token", strings.TrimSpace(tok), "--data", t.TempDir(), "--name", "ams-01",
		"--labels", "role=mirror", "--ca-cert", filepath.Join(data, "tls", "ca.pem"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.WaitEvent(ctx, 0, func(e api.Event) bool { return e.Type == "node.enrolled" && e.Subject == "ams-01" }); err != nil {
		t.Fatalf("the agent did not enroll: %v\n%s", err, agent.stderr.String())
	}
	n, err := admin.Node(ctx, "ams-01")
	if err != nil || n.Labels["role"] != "mirror" {
		t.Fatalf("node ams-01: %+v %v", n, err)
	}
	agent.stop(t)
	srv.stop(t)
}

// The blob directory is --blobs, else $FERRY_BLOBS, else DATA/blobs: replicas point theirs at
// one shared directory, outside their own data directories.
func TestBlobsDir(t *testing.T) {
	for _, tt := range []struct {
		name, env, flag, want string
	}{
		{name: "default", want: "data/blobs"},
		{name: "env", env: "shared", want: "shared"},
		{name: "flag", env: "shared", flag: "flagged", want: "flagged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			noEnv(t)
			root := t.TempDir()
			args := []string{"server", "--data", filepath.Join(root, "data"), "--listen", "127.0.0.1:0"}
			if tt.env != "" {
				t.Setenv("FERRY_BLOBS", filepath.Join(root, tt.env))
			}
			if tt.flag != "" {
				args = append(args, "--blobs", filepath.Join(root, tt.flag))
			}
			srv := start(t, args...)
			srv.stderr.WaitMatch(t, regexp.MustCompile(`msg=serving `))
			srv.stop(t)
			for _, d := range []string{"data/blobs", "shared", "flagged"} {
				_, err := os.Stat(filepath.Join(root, d, "sha256"))
				if made := err == nil; made != (d == tt.want) {
					t.Errorf("blob store in %s: %v", d, err)
				}
			}
		})
	}
}

// ferry dev runs a server and its agents in one process, says how to reach them, and stops
// everything when cancelled.
func TestDev(t *testing.T) {
	noEnv(t)
	data := t.TempDir()
	dev := start(t, "dev", "--agents", "2", "--sites", "1", "--data", data, "--listen", "127.0.0.1:0")
	addr := dev.stdout.WaitMatch(t, regexp.MustCompile(`server  (https://\S+)`))
	dev.stdout.WaitMatch(t, regexp.MustCompile(`Ctrl-C stops everything`))
	admin := adminClient(t, addr, data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enrolled := map[string]bool{}
	_, err := admin.WaitEvent(ctx, 0, func(e api.Event) bool {
		if e.Type == "node.enrolled" {
			enrolled[e.Subject] = true
		}
		return len(enrolled) == 2
	})
	if err != nil || !enrolled["ams-01"] || !enrolled["ams-02"] {
		t.Fatalf("enrolled %v: %v", enrolled, err)
	}
	if _, err := admin.Release(ctx, "hello", "1.0.0"); err != nil {
		t.Fatalf("the demo release: %v", err)
	}
	dev.stop(t)
	if !strings.Contains(dev.stderr.String(), "stopping agents and server") {
		t.Errorf("dev did not say it was stopping:\n%s", dev.stderr.String())
	}
}

// A server that cannot listen says where and why in one line, naming the address once.
func TestListenError(t *testing.T) {
	noEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, stderr, code := ferry(t, "server", "--data", t.TempDir(), "--listen", addr)
	msg := strings.TrimSpace(stderr[strings.LastIndex(strings.TrimSpace(stderr), "\n")+1:])
	if code != 1 || strings.Count(msg, addr) != 1 || !strings.Contains(msg, "address already in use") {
		t.Fatalf("exit %d, last line %q", code, msg)
	}
}
