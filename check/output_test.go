package check

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// Outputs of real plugins (Debian's monitoring-plugins, NSClient++, the plugin guidelines'
// own example), the seeds of the fuzzers too.
var realOutputs = []string{
	"DISK OK - free space: / 3326 MB (56% inode=83%);| /=2643MB;5948;5958;0;5968\n",
	"OK - load average: 0.02, 0.04, 0.05|load1=0.020;15.000;30.000;0; load5=0.040;10.000;25.000;0; load15=0.050;5.000;20.000;0; \n",
	"TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000123s;;;0.000000;10.000000\n",
	"HTTP OK: HTTP/1.1 200 OK - 612 bytes in 0.001 second response time |time=0.000645s;;;0.000000;10.000000 size=612B;;;0\n",
	"PING OK - Packet loss = 0%, RTA = 0.05 ms|rta=0.052000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0\n",
	"PROCS OK: 1 process with command name 'sshd' | procs=1;;;0;\n",
	"SWAP OK - 100% free (2047 MB out of 2047 MB) |swap=2147479552B;0;0;0;2147479552\n",
	"DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414\n/var/log=818MB;970;975;0;980\n",
	"OK: All drives within bounds.|'C:\\ used %'=45%;80;90 'C:\\ used'=20.5GB;37.1;41.7;0;46.4\n",
	"CRITICAL - rx bytes unknown | 'rx bytes'=U;;;; 'it''s'=1c\n",
	"APT WARNING: 3 packages available for upgrade (1 critical updates). |available_upgrades=3;;;0 critical_updates=1;;;0\n",
	"LOAD WARNING - 1.5e+01 | load=1.5e+01;@10:20;~:30;0\r\n",
	"no perfdata at all\nsecond line\n",
	"",
}

func TestParseOutput(t *testing.T) {
	cases := []struct {
		in   string
		text string
		long string
		perf []string // each item written back by Perf.String
	}{
		{realOutputs[0], "DISK OK - free space: / 3326 MB (56% inode=83%);", "", []string{"/=2643MB;5948;5958;0;5968"}},
		{realOutputs[1], "OK - load average: 0.02, 0.04, 0.05", "", []string{"load1=0.02;15;30;0", "load5=0.04;10;25;0", "load15=0.05;5;20;0"}},
		{realOutputs[2], "TCP OK - 0.000 second response time on 127.0.0.1 port 22", "", []string{"time=0.000123s;;;0;10"}},
		{realOutputs[7], "DISK OK - free space: / 3326 MB (56%);", "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);",
			[]string{"/=2643MB;5948;5958;0;5968", "/boot=68MB;88;93;0;98", "/home=69357MB;253404;253409;0;253414", "/var/log=818MB;970;975;0;980"}},
		{realOutputs[8], "OK: All drives within bounds.", "", []string{"'C:\\ used %'=45%;80;90", "'C:\\ used'=20.5GB;37.1;41.7;0;46.4"}},
		{realOutputs[9], "CRITICAL - rx bytes unknown", "", []string{"'rx bytes'=U", "'it''s'=1c"}},
		{realOutputs[11], "LOAD WARNING - 1.5e+01", "", []string{"load=15;@10:20;~:30;0"}},
		{realOutputs[12], "no perfdata at all", "second line", nil},
		{"OK | a=1 b c=x =5 d=2;;;; e=3;junk;10 f=1e400 g=7ms0 'open=1 h=2", "OK", "", []string{"a=1", "d=2", "e=3;;10"}},
	}
	for _, c := range cases {
		o := ParseOutput(c.in)
		var perf []string
		for _, p := range o.Perf {
			perf = append(perf, p.String())
		}
		if o.Text != c.text || o.Long != c.long || !reflect.DeepEqual(perf, c.perf) {
			t.Errorf("ParseOutput(%q)\n = %q, %q, %q\nwant %q, %q, %q", c.in, o.Text, o.Long, perf, c.text, c.long, c.perf)
		}
	}
}

func TestParsePerfFields(t *testing.T) {
	ps := ParsePerf("'a b'=-1.5KB;10:;@5:8;0;100")
	if len(ps) != 1 {
		t.Fatalf("got %v", ps)
	}
	p := ps[0]
	if p.Label != "a b" || p.Value != -1.5 || p.UOM != "KB" || *p.Warn != (Range{Start: 10, End: math.Inf(1)}) ||
		*p.Crit != (Range{Start: 5, End: 8, Inside: true}) || *p.Min != 0 || *p.Max != 100 {
		t.Fatalf("got %+v", p)
	}
	// JSON carries the ranges in Nagios syntax; the infinities survive the round trip.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"warn":"10:"`) || !strings.Contains(string(b), `"crit":"@5:8"`) {
		t.Fatalf("json %s", b)
	}
	var back Perf
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("json round trip: %+v %v", back, err)
	}
}

func TestParseRange(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		in    string
		want  Range
		alert []float64
		quiet []float64
	}{
		{"10", Range{0, 10, false}, []float64{-1, 11}, []float64{0, 10}},
		{"10:", Range{10, inf, false}, []float64{9.9}, []float64{10, 1e300}},
		{"~:10", Range{-inf, 10, false}, []float64{10.1}, []float64{-1e300, 10}},
		{"10:20", Range{10, 20, false}, []float64{9, 21}, []float64{10, 20}},
		{"@10:20", Range{10, 20, true}, []float64{10, 15, 20}, []float64{9, 21}},
		{":5", Range{0, 5, false}, []float64{6}, []float64{0}},
	}
	for _, c := range cases {
		r, err := ParseRange(c.in)
		if err != nil || r != c.want {
			t.Errorf("ParseRange(%q) = %+v, %v; want %+v", c.in, r, err, c.want)
			continue
		}
		for _, v := range c.alert {
			if !r.Alerts(v) {
				t.Errorf("%s should alert on %v", c.in, v)
			}
		}
		for _, v := range c.quiet {
			if r.Alerts(v) {
				t.Errorf("%s should not alert on %v", c.in, v)
			}
		}
	}
	for _, bad := range []string{"", "@", "20:10", "x", "1:x", "~", "10:20:30", "nan", "inf:", "1e999"} {
		if r, err := ParseRange(bad); err == nil {
			t.Errorf("ParseRange(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestStateText(t *testing.T) {
	for s, want := range map[State]string{OK: "OK", Warning: "WARNING", Critical: "CRITICAL", Unknown: "UNKNOWN"} {
		b, err := json.Marshal(s)
		var back State
		if s.String() != want || err != nil || string(b) != `"`+want+`"` || json.Unmarshal(b, &back) != nil || back != s {
			t.Errorf("%d: %q %s %v %v", int(s), s.String(), b, err, back)
		}
	}
	var s State
	if err := s.UnmarshalText([]byte("ok")); err == nil {
		t.Error("lower-case state accepted")
	}
}

func FuzzParseOutput(f *testing.F) {
	for _, o := range realOutputs {
		f.Add(o)
	}
	f.Add("OK | 'unclosed=1 a=2")
	f.Add("OK | a=1;;;;;;;; b=2\n|\n|c=3")
	f.Fuzz(func(t *testing.T, s string) {
		o := ParseOutput(s)
		if strings.Contains(o.Text, "\n") || !utf8.ValidString(o.Text) || !utf8.ValidString(o.Long) {
			t.Fatalf("text %q long %q", o.Text, o.Long)
		}
		if len(o.Perf) > MaxPerf {
			t.Fatalf("%d perf items", len(o.Perf))
		}
		for _, p := range o.Perf {
			checkPerf(t, p)
		}
		if _, err := json.Marshal(o.Perf); err != nil {
			t.Fatalf("perf does not marshal: %v", err)
		}
	})
}

func FuzzParsePerf(f *testing.F) {
	for _, o := range realOutputs {
		if _, perf, ok := strings.Cut(o, "|"); ok {
			f.Add(perf)
		}
	}
	f.Add("'a''b'=1 '''x'''=2 'tab\there'=3")
	f.Add("a=1e5e b=.5 c=-.5e-3us;1;2 d=U;@~:;0:;-0;0")
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range ParsePerf(s) {
			checkPerf(t, p)
		}
	})
}

// checkPerf asserts what every parsed item holds, and that it reads back as itself.
func checkPerf(t *testing.T, p Perf) {
	t.Helper()
	if p.Label == "" || len(p.Label) > MaxLabelLen || math.IsNaN(p.Value) || math.IsInf(p.Value, 0) || (p.Unknown && p.Value != 0) {
		t.Fatalf("bad item %+v", p)
	}
	back := ParsePerf(p.String())
	if len(back) != 1 || !reflect.DeepEqual(back[0], p) {
		t.Fatalf("%+v written as %q reads back as %+v", p, p.String(), back)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10", "10:", "~:10", "10:20", "@10:20", "@~:", ":5", "-1e3:-1", "0.5", "@0:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if math.IsNaN(r.Start) || math.IsNaN(r.End) || r.Start > r.End {
			t.Fatalf("%q: bad range %+v", s, r)
		}
		back, err := ParseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("%q: %+v written as %q reads back as %+v, %v", s, r, r.String(), back, err)
		}
	})
}
