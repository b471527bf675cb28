package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/clock"
)

// Every process, hook and check the agent starts learns the node's name, the app and the
// version it belongs to (FERRY_NODE, FERRY_APP, FERRY_VERSION), as examples/hello expects.
func TestNodeAppAndVersionInEnvironment(t *testing.T) {
	r := newRig(t)
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	killServices(t, dir)
	n := r.start("env-node", dir, agent.Config{Clock: clk})
	say := `echo \"$FERRY_NODE $FERRY_APP $FERRY_VERSION\" >`
	r.pushManifest("1.0.0", `processes:
  - name: web
    command: [sh, -c, "`+say+` process.env; exec sleep 100000"]
hooks: {post_install: [sh, -c, "`+say+` post_install.env"], post_start: [sh, -c, "`+say+` post_start.env"]}
checks:
  - {name: env, exec: [sh, -c, "`+say+` check.env; test -s process.env"], interval: 1s}
update: {min_healthy_time: 0s, healthy_deadline: 5s}
`, nil)
	r.deploy("hello@1.0.0", "role=env-node")
	n.waitReport(t, clk, inState(api.AppStateRunning, "1.0.0"))
	for _, f := range []string{"process.env", "post_install.env", "post_start.env", "check.env"} {
		b, err := os.ReadFile(filepath.Join(dir, "apps/hello/current", f))
		if got := strings.TrimSpace(string(b)); err != nil || got != "env-node hello 1.0.0" {
			t.Errorf("%s: %q %v", f, got, err)
		}
	}
}
