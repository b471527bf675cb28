package check

import (
	"context"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseThreshold(t *testing.T) {
	cases := []struct {
		in   string
		want Threshold
		err  string
	}{
		{"10%", Threshold{Percent: true, Value: 10}, ""},
		{"2.5%", Threshold{Percent: true, Value: 2.5}, ""},
		{"0%", Threshold{Percent: true, Value: 0}, ""},
		{"100%", Threshold{Percent: true, Value: 100}, ""},
		{"5GiB", Threshold{Value: 5 << 30}, ""},
		{"5gib", Threshold{Value: 5 << 30}, ""},
		{"500MB", Threshold{Value: 500e6}, ""},
		{"1.5T", Threshold{Value: 1.5 * (1 << 40)}, ""},
		{"512 KiB", Threshold{Value: 512 << 10}, ""},
		{"4096B", Threshold{Value: 4096}, ""},
		{"0.5B", Threshold{Value: 0}, ""},
		{"", Threshold{}, "empty"},
		{"10", Threshold{}, "give a unit"},
		{"101%", Threshold{}, "at most 100"},
		{"-5%", Threshold{}, "non-negative"},
		{"+5%", Threshold{}, "non-negative"},
		{"%", Threshold{}, "non-negative number"},
		{"5 parsecs", Threshold{}, `unknown unit "parsecs"`},
		{"5Mb/s", Threshold{}, "unknown unit"},
		{"1e30TiB", Threshold{}, "larger than any file system"},
		{strings.Repeat("9", 40) + "%", Threshold{}, "longer than 32 bytes"},
		{"1e999%", Threshold{}, "out of range"},
	}
	for _, c := range cases {
		got, err := ParseThreshold(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: got %+v %v, want %+v", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: got %+v %v, want an error with %q", c.in, got, err, c.err)
		}
	}
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"10%", "5GiB", "500MB", "1.5T", "0%", "1e3kb", "", "%", "5 parsecs", "9e18B", "\xff%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, "\n") || !utf8.ValidString(msg) || len(msg) > 300 {
				t.Fatalf("error for %q is not one short line: %q", s, msg)
			}
			return
		}
		if math.IsNaN(th.Value) || th.Value < 0 || (th.Percent && th.Value > 100) || th.Value > math.MaxInt64 {
			t.Fatalf("%q gave %+v", s, th)
		}
		back, err := ParseThreshold(th.String())
		if err != nil || back != th {
			t.Fatalf("%q → %+v → %q → %+v %v", s, th, th.String(), back, err)
		}
	})
}

func TestDiskResult(t *testing.T) {
	const gib = 1 << 30
	pct := func(v float64) Threshold { return Threshold{Percent: true, Value: v} }
	size := func(v float64) Threshold { return Threshold{Value: v} }
	// 100 GiB usable: 75 used, 25 free (and 10 more reserved for root); 1000 inodes, 40 free.
	sp := space{size: 110 * gib, used: 75 * gib, avail: 25 * gib, files: 1000, filesFree: 40}
	cases := []struct {
		warn, crit Threshold
		state      State
		warnAt     float64 // used bytes the warn threshold stands for, out of the whole size
	}{
		{pct(10), pct(5), OK, 99 * gib},
		{pct(25), pct(5), Warning, 82.5 * gib}, // at the threshold is past it
		{pct(30), pct(25), Critical, 77 * gib},
		{size(20 * gib), size(10 * gib), OK, 90 * gib},
		{size(30 * gib), size(10 * gib), Warning, 80 * gib},
		{size(200 * gib), size(100 * gib), Critical, 0}, // a threshold past the size: never below 0
	}
	for _, c := range cases {
		res := diskResult("/srv", sp, c.warn, c.crit)
		want := "DISK " + c.state.String() + " - free space: /srv 25600MiB (25% inode=4%);"
		if res.State != c.state || res.Output != want || len(res.Perf) != 1 {
			t.Errorf("%v/%v: %v %q, want %v %q", c.warn, c.crit, res.State, res.Output, c.state, want)
			continue
		}
		p := res.Perf[0]
		if p.Label != "/srv" || p.Value != 75*gib || p.UOM != "B" || p.Warn == nil || p.Warn.End != c.warnAt || p.Warn.Start != 0 ||
			p.Min == nil || *p.Min != 0 || p.Max == nil || *p.Max != 110*gib {
			t.Errorf("%v/%v: perf %s", c.warn, c.crit, p)
		}
	}
	// df's rounding: used rounded up, free the rest; no inode figure when the file system keeps
	// no count.
	res := diskResult("/x", space{used: 1, avail: 999}, pct(10), pct(5))
	if res.Output != "DISK OK - free space: /x 0MiB (99%);" {
		t.Errorf("rounding: %q", res.Output)
	}
	res = diskResult("/x", space{}, pct(10), pct(5))
	if res.State != Critical {
		t.Errorf("an empty file system: %v %q", res.State, res.Output)
	}
}

func TestDiskCheck(t *testing.T) {
	r := newRunner()
	dir := t.TempDir()
	res := r.Run(context.Background(), Spec{Disk: dir, Warn: "0%", Crit: "0B"})
	if res.State != OK || !strings.HasPrefix(res.Output, "DISK OK - free space: "+dir+" ") || len(res.Perf) != 1 || res.Perf[0].Label != dir ||
		res.Perf[0].Max == nil || *res.Perf[0].Max <= 0 || !res.Time.Equal(t0) {
		t.Fatalf("%+v", res)
	}
	res = r.Run(context.Background(), Spec{Disk: dir, Warn: "100%", Crit: "100%"})
	if res.State != Critical || !strings.HasPrefix(res.Output, "DISK CRITICAL - free space: ") {
		t.Fatalf("%+v", res)
	}
	res = r.Run(context.Background(), Spec{Disk: dir}) // defaults 10% and 5%
	if !strings.HasPrefix(res.Output, "DISK "+res.State.String()+" - free space: ") {
		t.Fatalf("defaults: %+v", res)
	}
	res = r.Run(context.Background(), Spec{Disk: dir + "/none"})
	if res.State != Critical || res.Output != "DISK CRITICAL - "+dir+"/none is not accessible: no such file or directory" {
		t.Fatalf("missing path: %+v", res)
	}
	res = r.Run(context.Background(), Spec{Disk: dir, Warn: "10"})
	if res.State != Unknown || !strings.HasPrefix(res.Output, `DISK UNKNOWN - invalid disk threshold "10"`) {
		t.Fatalf("bad threshold: %+v", res)
	}
	res = r.Run(context.Background(), Spec{Disk: dir, TCP: "127.0.0.1:1"})
	if res.State != Unknown || !strings.Contains(res.Output, "exactly one of") {
		t.Fatalf("two kinds: %+v", res)
	}
}
