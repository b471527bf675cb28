package supervise

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// What the kernel writes, and what a hostile or odd command name can make of it.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (sleep) S 1 4242 4242 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 123456 2322432 224 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"))
	f.Add([]byte("7 (a) b) (c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n"))
	f.Add([]byte("1 () R"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			return
		}
		// A parsed line names its fields after the last ')', and parsing is stable.
		end := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 20 || f[0][0] != s.State {
			t.Fatalf("parsed %q into %+v", b, s)
		}
		again, err := parseStat(b)
		if err != nil || again != s {
			t.Fatalf("second parse of %q: %+v, %v", b, again, err)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"boot":"b","processes":{"web":{"pid":42,"start_ticks":7,"restarts":2,"spec":"0123456789abcdef0123456789abcdef"}}}`))
	f.Add([]byte(`{"version":1,"processes":{"../x":{"pid":-1}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		// What is accepted is safe to act on, and survives a round trip.
		for name, r := range st.Processes {
			if checkName(name) != nil || r.Pid < 0 || r.Pid == 1 || r.Pid > maxPid || (r.Pid > 0 && r.StartTicks == 0) || r.Restarts < 0 {
				t.Fatalf("accepted %q: %+v", name, r)
			}
		}
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeState(out); err != nil {
			t.Fatalf("accepted state does not read back: %v\n%s", err, out)
		}
	})
}

// Log contents are whatever a service writes.
func FuzzLastLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), 2)
	f.Add([]byte("a\nb\nunfinished"), 1)
	f.Add([]byte("\n\n\n"), 2)
	f.Add([]byte(""), 3)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		n = n%1000 + 1
		if n < 1 {
			n += 1000
		}
		got := lastLines(b, n)
		if !bytes.HasSuffix(b, got) {
			t.Fatalf("lastLines(%q, %d) = %q, not a suffix", b, n, got)
		}
		want := min(n, lines(b))
		if lines(got) != want {
			t.Fatalf("lastLines(%q, %d) = %q: %d lines, want %d", b, n, got, lines(got), want)
		}
		if len(got) < len(b) && b[len(b)-len(got)-1] != '\n' {
			t.Fatalf("lastLines(%q, %d) = %q starts inside a line", b, n, got)
		}
	})
}
