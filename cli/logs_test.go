package cli

import (
	"context"
	"strings"
	"testing"
)

func TestLogsUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "n1"}, "ferry: logs: accepts 2 arg(s), received 1"},
		{[]string{"logs", "n1", "hello", "--tail", "-1"}, "ferry: invalid --tail -1: want 0 to 10000 lines"},
		{[]string{"logs", "n1", "hello", "--tail", "0"}, "ferry: --tail 0 prints nothing without --follow"},
		{[]string{"logs", "n1", "../hello"}, "ferry: invalid app name"},
		{[]string{"logs", "n1", "hello", "--process", "a/b"}, "ferry: invalid process name"},
	} {
		out, errOut, code := ferryWith(context.Background(), noEnv, tt.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tt.want) {
			t.Errorf("ferry %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
}

// The server's refusal is the one line ferry prints, with exit status 1.
func TestLogsOfAnAppNotThere(t *testing.T) {
	f := newFleet(t)
	f.agent("n1", "ams", nil)
	out, errOut, code := f.ferry("logs", "n1", "hello")
	if code != 1 || out != "" || errOut != "ferry: node n1 reports no app; hello is not installed there\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code = f.ferry("logs", "n9", "hello"); code != 1 || errOut != "ferry: node \"n9\" not found\n" {
		t.Fatalf("unknown node: exit %d, stderr %q", code, errOut)
	}
}

// What a process printed reaches the terminal with its steering characters escaped, tabs kept.
func TestCopySafeLines(t *testing.T) {
	var b strings.Builder
	in := "plain\tline\n\x1b[2Jcleared\r\nbidi \u202e txt\nno newline"
	if err := copySafeLines(&b, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	want := "plain\tline\n\\x1b[2Jcleared\\r\nbidi \\u202e txt\nno newline"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// Whatever a node's processes wrote, what reaches the terminal steers it no more than text:
// no control character but tab and newline, and the lines as they came.
func FuzzCopySafeLines(f *testing.F) {
	f.Add("plain\n")
	f.Add("\x1b]0;title\x07\r\n\u202e\xff\xfe\tend")
	f.Add(strings.Repeat("x", 70<<10) + "\n")
	f.Fuzz(func(t *testing.T, in string) {
		var b strings.Builder
		if err := copySafeLines(&b, strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, r := range out {
			if r != '\t' && r != '\n' && unsafeRune(r) {
				t.Fatalf("%q printed as %q, which holds %U", in, out, r)
			}
		}
		if strings.Count(out, "\n") != strings.Count(in, "\n") {
			t.Fatalf("%q printed as %q: the lines changed", in, out)
		}
	})
}
