package client

import (
	"strings"
	"testing"
)

// One address or several: the client uses the first, Failover moves through the rest and back.
func TestAddresses(t *testing.T) {
	c, err := New("https://a:7700/, https://b:7700", "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr() != "https://a:7700" || c.Addrs() != "https://a:7700,https://b:7700" {
		t.Fatalf("Addr %q Addrs %q", c.Addr(), c.Addrs())
	}
	if !c.Failover() || c.Addr() != "https://b:7700" || !c.Failover() || c.Addr() != "https://a:7700" {
		t.Fatalf("failover went to %q", c.Addr())
	}
	one, _ := New("https://a:7700", "")
	if one.Failover() || one.Addr() != "https://a:7700" {
		t.Fatal("a single address failed over")
	}
	for _, bad := range []string{"", "a:7700", "https://a,", "ftp://a", strings.Repeat("https://a,", maxAddrs) + "https://a"} {
		if _, err := New(bad, ""); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// Whatever the address text, New refuses it in one line or accepts it, and what it accepts
// reads back the same.
func FuzzNew(f *testing.F) {
	f.Add("https://127.0.0.1:7700")
	f.Add("https://a:1,http://b:2/")
	f.Add(" https://[::1]:7700 ,https://x")
	f.Fuzz(func(t *testing.T, addr string) {
		c, err := New(addr, "")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		again, err := New(c.Addrs(), "")
		if err != nil || again.Addrs() != c.Addrs() {
			t.Fatalf("%q read back as %q (%v)", c.Addrs(), again.Addrs(), err)
		}
	})
}
