package api

import (
	"strings"
	"testing"

	"github.com/ferryhq/ferry/pki"
)

const pin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestSplitEnrollToken(t *testing.T) {
	for _, c := range []struct {
		tok, cred, pin string
		ok             bool
	}{
		{"ferry_e_abcd2345_secretsecret", "ferry_e_abcd2345_secretsecret", "", true},
		{"ferry_e_abcd2345_secret." + pin, "ferry_e_abcd2345_secret", pin, true},
		{"ferry_e_abcd2345_secret.", "", "", false},
		{"ferry_e_abcd2345_secret." + strings.ToUpper(pin), "", "", false},
		{"ferry_e_abcd2345_secret." + pin[:63], "", "", false},
		{"ferry_o_abcd2345_secret", "", "", false},
		{"ferry_e_abcd2345", "", "", false},
		{"ferry_e__secret", "", "", false},
		{"ferry_e_ab_cd_ef", "", "", false},
		{"ferry_e_ab\x1b_cd", "", "", false},
		{"", "", "", false},
	} {
		cred, p, err := SplitEnrollToken(c.tok)
		if (err == nil) != c.ok || cred != c.cred || p != c.pin {
			t.Errorf("%q: got %q %q %v", c.tok, cred, p, err)
		}
	}
}

func FuzzSplitEnrollToken(f *testing.F) {
	f.Add("ferry_e_abcd2345_secret." + pin)
	f.Add("ferry_e_abcd2345_secret")
	f.Add("ferry_e_a_b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		cred, p, err := SplitEnrollToken(tok)
		if err != nil {
			if cred != "" || p != "" {
				t.Fatalf("refused %q but returned %q %q", tok, cred, p)
			}
			return
		}
		if !strings.HasPrefix(cred, EnrollPrefix) || strings.ContainsAny(cred, ". \n\x00") {
			t.Fatalf("accepted %q with credential %q", tok, cred)
		}
		if p != "" && !pki.ValidPin(p) {
			t.Fatalf("accepted %q with pin %q", tok, p)
		}
		if p == "" && cred != tok || p != "" && cred+"."+p != tok {
			t.Fatalf("%q does not split into %q and %q", tok, cred, p)
		}
	})
}
