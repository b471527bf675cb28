package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ferryhq/ferry/agent"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/bundletest"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/signing"
)

// chromium finds Debian's chromium; the Makefile's deps target installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: install Debian's chromium (make deps does)")
	return ""
}

// artifacts is where screenshots go: $FERRY_TEST_ARTIFACTS/TEST, or a temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if base := os.Getenv("FERRY_TEST_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, t.Name())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// headless starts a headless Chromium that reaches nothing but loopback, and returns a tab.
func headless(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Run(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tab
}

// drive starts a headless Chromium for at most within and returns run, which runs a step's
// actions in it (on failure it saves failed.png with the artifacts and fails the test), and
// screenshot, which saves the page as NAME.png with the artifacts.
func (s *site) drive(within time.Duration) (run func(what string, actions ...chromedp.Action), screenshot func(name string)) {
	t, shots := s.t, artifacts(s.t)
	ctx, cancel := context.WithTimeout(s.ctx, within)
	t.Cleanup(cancel)
	tab := headless(t, ctx)
	run = func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(tab, actions...); err != nil {
			var shot []byte
			if chromedp.Run(tab, chromedp.FullScreenshot(&shot, 100)) == nil {
				os.WriteFile(filepath.Join(shots, "failed.png"), shot, 0o644)
			}
			t.Fatalf("%s: %v", what, err)
		}
	}
	screenshot = func(name string) {
		t.Helper()
		var shot []byte
		run("screenshot "+name, chromedp.FullScreenshot(&shot, 100))
		if err := os.WriteFile(filepath.Join(shots, name+".png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return run, screenshot
}

// signInAt opens path in the browser, which sends it to the sign-in page, and signs in there with
// the admin token.
func (s *site) signInAt(path string) chromedp.Tasks {
	return chromedp.Tasks{
		chromedp.Navigate(s.addr + path),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", s.srv.AdminToken, chromedp.ByID),
		chromedp.Click("#signin", chromedp.ByID),
	}
}

// runAgent starts a real agent for node name at site and waits until it has enrolled; the
// returned function kills it.
func (s *site) runAgent(name, siteName string) (kill func()) {
	s.t.Helper()
	tok, err := s.admin.CreateToken(s.ctx, api.TokenCreate{Site: siteName})
	if err != nil {
		s.t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: s.addr, Token: tok.Secret, DataDir: s.t.TempDir(), Name: name, Logger: quiet()})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	kill = func() { cancel(); <-done }
	s.t.Cleanup(kill)
	wait, stop := context.WithTimeout(s.ctx, 30*time.Second)
	defer stop()
	if _, err := s.admin.WaitEvent(wait, 0, func(e api.Event) bool { return e.Type == api.EventNodeEnrolled && e.Subject == name }); err != nil {
		s.t.Fatalf("agent %s did not enroll: %v", name, err)
	}
	return kill
}

// push signs app@version with a key the server trusts and pushes it.
func (s *site) push(app, version string) {
	s.t.Helper()
	dir := s.t.TempDir()
	pub, err := signing.GenerateKeyPair(dir, "")
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.admin.TrustKey(s.ctx, api.KeyTrust{PublicKey: pub.String()}); err != nil {
		s.t.Fatal(err)
	}
	priv, err := signing.LoadSecretKey(filepath.Join(dir, signing.SecretKeyFile), "")
	if err != nil {
		s.t.Fatal(err)
	}
	b := bundletest.Build(s.t, app, version, "hello")
	file := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	sigFile, err := signing.SignFile(priv, file, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		s.t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.admin.PushRelease(s.ctx, f, int64(len(b)), sig); err != nil {
		s.t.Fatal(err)
	}
}

func coord(v float64) *float64 { return &v }

// The whole interface in a real browser, against a real server and real agents: sign in, one dot
// per site, a site and a node, a rollout whose page moves live, and a dot whose colour turns when
// its site loses an agent.
func TestBrowser(t *testing.T) {
	s := startSite(t, server.Config{HeartbeatInterval: 250 * time.Millisecond, HeartbeatGrace: 2 * time.Second})
	for _, st := range []client.SiteAdd{
		{Name: "ams", Tier: 1, Lat: coord(52.37), Lon: coord(4.9)},
		{Name: "nyc", Tier: 2, Lat: coord(40.71), Lon: coord(-74.0)},
		{Name: "syd", Tier: 2, Lat: coord(-33.87), Lon: coord(151.2)},
	} {
		if _, err := s.admin.AddSite(s.ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	s.runAgent("a1", "ams")
	killA2 := s.runAgent("a2", "ams")
	s.runAgent("n1", "nyc")

	run, screenshot := s.drive(3 * time.Minute)

	// Sign in: the overview sends the browser to the sign-in page and back.
	var location string
	run("sign in",
		s.signInAt("/"),
		chromedp.WaitVisible("#map", chromedp.ByID),
		chromedp.Location(&location),
	)
	if location != s.addr+"/" {
		t.Fatalf("after sign-in the browser is at %s", location)
	}

	// One dot per site, coloured by health; the hover card names the site.
	var dots int
	var card string
	run("the map",
		chromedp.WaitVisible(`circle.dot.h-ok[data-site="ams"]`),
		chromedp.Evaluate(`document.querySelectorAll("#map circle.dot").length`, &dots),
		chromedp.Evaluate(`document.querySelector('circle[data-site="nyc"]').dispatchEvent(new MouseEvent("mouseover", {bubbles: true})); document.getElementById("card").innerText`, &card),
	)
	if dots != 3 {
		t.Fatalf("%d dots on the map, want 3 (one per site)", dots)
	}
	if card != "nyc\ntier 2\n1 up, 0 down\nhealth: ok" {
		t.Errorf("hover card: %q", card)
	}
	screenshot("overview")

	// A site, then a node.
	var rows int
	run("a site",
		chromedp.Click(`circle[data-site="ams"]`),
		chromedp.WaitVisible("#nodes", chromedp.ByID),
		chromedp.Evaluate(`document.querySelectorAll("#nodes tbody tr").length`, &rows),
	)
	if rows != 2 {
		t.Fatalf("site ams lists %d nodes, want 2", rows)
	}
	screenshot("site")
	run("a filtered site",
		chromedp.SetValue("#f-q", "a2", chromedp.ByID),
		chromedp.Submit("#f-q", chromedp.ByID),
		chromedp.WaitVisible(`#nodes tr[data-node="a2"]`),
		chromedp.Evaluate(`document.querySelectorAll("#nodes tbody tr").length`, &rows),
	)
	if rows != 1 {
		t.Fatalf("the text filter a2 left %d nodes", rows)
	}
	run("a node",
		chromedp.Click(`a[href="/nodes/a2"]`),
		chromedp.WaitVisible("#node-health", chromedp.ByID),
	)
	screenshot("node")

	// A rollout behind an approval: its page moves on by itself when another operator approves.
	s.push("hello", "1.0.0")
	ro, err := s.admin.StartRollout(s.ctx, api.RolloutStart{App: "hello", Version: "1.0.0", Selector: "site!=syd", PolicyYAML: `name: gated
waves:
  - {name: pilot, selector: "site=ams", approval: {count: 1}, healthy_deadline: 30s}
  - {name: rest, healthy_deadline: 30s}
`})
	if err != nil {
		t.Fatal(err)
	}
	var marker bool
	run("the rollout page",
		chromedp.Navigate(s.addr+"/rollouts/"+strconv.FormatInt(ro.ID, 10)),
		chromedp.WaitVisible(`#waves tr[data-wave="pilot"] span[data-state="awaiting_approval"]`),
		chromedp.WaitVisible("#ro-live", chromedp.ByID),
		chromedp.WaitVisible("#act-approve", chromedp.ByID),
		chromedp.Evaluate(`window.ferryUnreloaded = true`, &marker),
	)
	screenshot("rollout-awaiting-approval")
	// A viewer sees the same page with no control on it.
	viewer := s.browser()
	viewer.signIn(s.token(api.RoleViewer).Secret)
	if _, page := viewer.do("GET", "/rollouts/"+strconv.FormatInt(ro.ID, 10), nil, nil); !strings.Contains(page, "awaiting_approval") || strings.Contains(page, "act-") || strings.Contains(page, `method="post" action="/rollouts`) {
		t.Errorf("a viewer's rollout page:\n%s", page)
	}
	if _, err := s.admin.ActOnRollout(s.ctx, ro.ID, "approve", api.RolloutAction{}); err != nil {
		t.Fatal(err)
	}
	var done string
	run("the rollout completes live",
		chromedp.WaitVisible(`#ro-state[data-state="completed"]`),
		chromedp.Evaluate(`window.ferryUnreloaded === true`, &marker),
		chromedp.Evaluate(`document.querySelector('#waves tr[data-wave="pilot"] [data-f="done"]').textContent`, &done),
	)
	if !marker {
		t.Error("the rollout page reloaded; it should have moved by itself")
	}
	if done != "2" {
		t.Errorf("pilot wave done %q, want 2", done)
	}
	screenshot("rollout-completed")

	// The bulletin says which site runs what; the events feed goes live; the statistics page
	// has nothing yet and says so.
	var runs string
	run("releases",
		chromedp.Navigate(s.addr+"/releases"),
		chromedp.WaitVisible(".bulletin", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector(".bulletin").innerText`, &runs),
	)
	if !strings.Contains(runs, "1.0.0 × 2") {
		t.Errorf("the bulletin says %q", runs)
	}
	screenshot("releases")
	run("events", chromedp.Navigate(s.addr+"/events"), chromedp.WaitVisible("#ev-live", chromedp.ByID))
	screenshot("events")
	run("statistics", chromedp.Navigate(s.addr+"/stats"), chromedp.WaitVisible("p.empty", chromedp.ByQuery))
	screenshot("stats")

	// A dead agent turns its site's dot amber, with no reload.
	run("back to the map",
		chromedp.Navigate(s.addr+"/"),
		chromedp.WaitVisible(`circle.dot.h-ok[data-site="ams"]`),
		chromedp.Evaluate(`window.ferryUnreloaded = true`, &marker),
	)
	killA2()
	run("the dot turns",
		chromedp.WaitVisible(`circle.dot.h-warning[data-site="ams"]`),
		chromedp.WaitVisible(`circle.dot.h-ok[data-site="nyc"]`),
		chromedp.WaitVisible(`#sites tr[data-site="ams"] .state.warning`),
		chromedp.Evaluate(`window.ferryUnreloaded === true`, &marker),
	)
	if !marker {
		t.Error("the overview reloaded; the map should have redrawn by itself")
	}
	screenshot("overview-agent-down")

	// On a phone the page fits its width: nothing scrolls sideways but the tables' own boxes.
	var overflow bool
	run("a phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(s.addr+"/sites/ams"),
		chromedp.WaitVisible("#nodes", chromedp.ByID),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth`, &overflow),
	)
	if overflow {
		t.Error("the site page is wider than a phone's screen")
	}
	screenshot("site-phone")
}
