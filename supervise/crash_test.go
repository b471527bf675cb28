package supervise

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/clock"
	"golang.org/x/sys/unix"
)

// TestMain runs, in helper mode, a supervisor in a process of its own that the tests can kill.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SUPERVISE_TEST_HELPER"); dir != "" {
		os.Exit(helper(dir))
	}
	os.Exit(m.Run())
}

// helper supervises a sleeper under dir, prints its pid, and waits to be killed.
func helper(dir string) int {
	s, err := Open(Config{StateDir: dir + "/state", LogDir: dir + "/logs"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Start(context.Background(), sleeper("web")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, _ := s.Status("web")
	fmt.Println(st.Pid)
	c := make(chan os.Signal, 1)
	signal.Notify(c, unix.SIGTERM)
	<-c
	return 0
}

// A supervisor killed with SIGKILL leaves its process running; the next one adopts it although
// it is not its child, and sees it end.
func TestAdoptionAfterSupervisorKilled(t *testing.T) {
	dir := t.TempDir()
	h := exec.Command(os.Args[0], "-test.run=^$")
	h.Env = append(os.Environ(), "SUPERVISE_TEST_HELPER="+dir)
	h.Stderr = os.Stderr
	out, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		h.Process.Kill()
		h.Wait()
		t.Fatalf("helper: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	h.Process.Kill()
	h.Wait()
	if !alive(pid) {
		t.Fatal("the process died with its supervisor")
	}

	clk := clock.NewFake(time.Unix(1e9, 0))
	s := open(t, dirs{dir + "/state", dir + "/logs"}, clk)
	if got := s.Unclaimed(); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("Unclaimed = %q", got)
	}
	w := watch(t, s)
	st := start(t, s, sleeper("web"))
	if st.Pid != pid || !st.Adopted {
		t.Fatalf("after the supervisor was killed: %+v, want pid %d adopted", st, pid)
	}
	if ps, _ := readStat(pid); ps.Pgrp != pid {
		t.Fatalf("adopted process in group %d", ps.Pgrp)
	}
	unix.Kill(pid, unix.SIGKILL)
	st = w.next("web", func(st Status) bool { return st.Pid != pid && st.Pid != 0 })
	if st.LastExit.Known || st.Restarts != 1 || st.State != Running {
		t.Fatalf("after the adopted process died: %+v", st)
	}
}
