package web

import (
	"strings"
	"testing"
)

func TestParseSignIn(t *testing.T) {
	for _, c := range []struct {
		body, token, next, err string
	}{
		{"token=ferry_o_abc_def&next=%2Fsites%2Fams", "ferry_o_abc_def", "/sites/ams", ""},
		{"token=+ferry_o_abc_def+", "ferry_o_abc_def", "/", ""},
		{"token=ferry_o_a&next=https%3A%2F%2Fevil.example%2F", "ferry_o_a", "/", ""},
		{"token=ferry_o_a&next=%2F%2Fevil.example", "ferry_o_a", "/", ""},
		{"token=ferry_o_a&next=%2F%5Cevil.example", "ferry_o_a", "/", ""},
		{"", "", "", "give an operator token"},
		{"token=ferry_e_abc_def", "", "", "not an operator token"},
		{"token=ferry_o_a%00b", "", "", "character"},
		{"token=" + strings.Repeat("a", 300), "", "", "longer than"},
		{"token=%zz", "", "", "not URL-encoded"},
		{strings.Repeat("x", maxSignIn+1), "", "", "larger than"},
	} {
		got, err := parseSignIn(strings.NewReader(c.body))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.40q: err %v, want %q", c.body, err, c.err)
			}
			continue
		}
		if err != nil || got.Token != c.token || got.Next != c.next {
			t.Errorf("%.40q: %+v %v, want %s %s", c.body, got, err, c.token, c.next)
		}
	}
}

func FuzzParseSignIn(f *testing.F) {
	f.Add("token=ferry_o_abc_def&next=%2F")
	f.Add("token=ferry_o_a&next=%2F%2Fevil")
	f.Add("next=/x&token=")
	f.Fuzz(func(t *testing.T, body string) {
		got, err := parseSignIn(strings.NewReader(body))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("a two-line error: %q", err)
			}
			return
		}
		if !strings.HasPrefix(got.Token, "ferry_o_") || len(got.Token) > maxToken {
			t.Errorf("accepted token %q", got.Token)
		}
		if !strings.HasPrefix(got.Next, "/") || strings.HasPrefix(got.Next, "//") || strings.ContainsAny(got.Next, "\\\r\n") {
			t.Errorf("accepted next %q", got.Next)
		}
	})
}

func TestLandPath(t *testing.T) {
	data, err := assetFS.ReadFile("assets/vendor/world-atlas/land-110m.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := landPath(data, "land")
	if err != nil {
		t.Fatal(err)
	}
	if rings := strings.Count(p, "Z"); rings < 100 || strings.Count(p, "M") < rings {
		t.Fatalf("%d rings closed, %d subpaths", rings, strings.Count(p, "M"))
	}
	if _, err := landPath(data, "countries"); err == nil {
		t.Fatal("a missing object drew a map")
	}
	if x, y := project(0, 0); x != mapWidth/2 || y != mapHeight/2 {
		t.Fatalf("0,0 at %v,%v", x, y)
	}
}
