package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/api"
)

// A real Prometheus server (Debian's) scrapes a Ferry server that requires a metrics token:
// the job that bears it reads ferry_nodes as the fleet stands, the job without it is refused.
func TestPrometheusScrapes(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is missing: run the suite with `make test`, which installs Debian's prometheus package")
	}
	const token = "scrape-5d0c44e1b7"
	h := start(t, Config{MetricsToken: token})
	h.site("ams", 1)
	h.site("fra", 2)
	tok := h.enrollToken("ams", 2)
	h.runAgent("a1", tok, "")
	h.runAgent("a2", tok, "")
	h.runAgent("f1", h.enrollToken("fra", 1), "")
	for _, n := range []string{"a1", "a2", "f1"} {
		h.waitEvent(0, api.EventNodeEnrolled, n)
	}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "metrics.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(h.addr, "https://")
	config := fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: ferry
    scheme: https
    tls_config: {ca_file: %q}
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q]}]
  - job_name: ferry-without-token
    scheme: https
    tls_config: {ca_file: %q}
    static_configs: [{targets: [%q]}]
`, h.srv.CAFile, tokenFile, target, h.srv.CAFile, target)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := l.Addr().String()
	l.Close() // Prometheus takes the address; another process taking it first fails the start loudly

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, prom, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	// query asks Prometheus's API for an instant vector: each series's labels and value.
	type series struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	query := func(q string) ([]series, error) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
			Data   struct {
				Result []series `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
			return nil, fmt.Errorf("%s: status %q, %v", q, body.Status, err)
		}
		return body.Data.Result, nil
	}
	// await retries q with a short backoff until ok accepts its answer: Prometheus's API has
	// nothing to wait on, and it scrapes every second.
	await := func(q string, ok func([]series) bool) []series {
		t.Helper()
		backoff := 50 * time.Millisecond
		for {
			res, err := query(q)
			if err == nil && ok(res) {
				return res
			}
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case err := <-exited:
				t.Fatalf("prometheus exited: %v\n%s", err, log.String())
			case <-ctx.Done():
				t.Fatalf("%s: no acceptable answer (last %+v, %v)\n%s", q, res, err, log.String())
			}
			backoff = min(2*backoff, time.Second)
		}
	}

	nodes := await(`ferry_nodes{job="ferry"}`, func(res []series) bool { return len(res) == 4 })
	got := map[string]string{}
	for _, s := range nodes {
		got[s.Metric["site"]+"/"+s.Metric["status"]] = fmt.Sprint(s.Value[1])
	}
	want := map[string]string{"ams/up": "2", "ams/down": "0", "fra/up": "1", "fra/down": "0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ferry_nodes %s = %q, want %s (all %v)", k, got[k], v, got)
		}
	}
	await(`up{job="ferry"} == 1`, func(res []series) bool { return len(res) == 1 })
	await(`up{job="ferry-without-token"} == 0`, func(res []series) bool { return len(res) == 1 })
	if res, err := query(`ferry_nodes{job="ferry-without-token"}`); err != nil || len(res) != 0 {
		t.Fatalf("the job without the token read %+v, %v", res, err)
	}
}
