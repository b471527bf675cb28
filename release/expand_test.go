package release

import (
	"strings"
	"testing"
)

func TestPortVar(t *testing.T) {
	for name, want := range map[string]string{"http": "FERRY_PORT_HTTP", "admin-api": "FERRY_PORT_ADMIN_API", "p2p": "FERRY_PORT_P2P"} {
		if got := PortVar(name); got != want {
			t.Errorf("PortVar(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"FERRY_PORT_HTTP": "31000", "FERRY_PORT_ADMIN": "8080"}
	cases := []struct{ in, want, err string }{
		{"--port=${FERRY_PORT_HTTP}", "--port=31000", ""},
		{"${FERRY_PORT_HTTP}${FERRY_PORT_ADMIN}", "310008080", ""},
		{"http://127.0.0.1:${FERRY_PORT_HTTP}/healthz", "http://127.0.0.1:31000/healthz", ""},
		{"no references, $HOME, $$, $", "no references, $HOME, $$, $", ""},
		{"$${FERRY_PORT_HTTP} is literal", "${FERRY_PORT_HTTP} is literal", ""},
		{"$$${FERRY_PORT_HTTP}", "$${FERRY_PORT_HTTP}", ""},
		{"${}", "", "invalid variable name"},
		{"${1X}", "", "invalid variable name"},
		{"${FERRY_PORT_HTTP", "", "unclosed ${"},
		{"${FERRY_PORT_DB}", "", "unknown variable ${FERRY_PORT_DB}"},
	}
	for _, c := range cases {
		got, err := Expand(c.in, vars)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Expand(%q) = %q, %v; want an error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"--port=${FERRY_PORT_HTTP}", "$${X}", "$$${FERRY_PORT_HTTP}", "${", "${a}${b}", "$", "}${FERRY_PORT_HTTP}{"} {
		f.Add(s)
	}
	vars := map[string]string{"FERRY_PORT_HTTP": "31000"}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Expand(s, vars)
		if err == nil && strings.Contains(s, "${") == (got == s) && !strings.Contains(s, "$${") {
			t.Fatalf("Expand(%q) = %q: references and result disagree", s, got)
		}
		// Escaping every ${ gives back the text as it was, whatever it holds.
		if back, err := Expand(strings.ReplaceAll(s, "${", "$${"), nil); err != nil || back != s {
			t.Fatalf("escaped %q expands to %q, %v", s, back, err)
		}
		// An expansion's value is never expanded again.
		if v, err := Expand("${FERRY_PORT_HTTP}", map[string]string{"FERRY_PORT_HTTP": s}); err != nil || v != s {
			t.Fatalf("value %q expands to %q, %v", s, v, err)
		}
	})
}
