package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// A request moves on to the next server when the one in use cannot take it: any request whose
// connection could not be opened, a GET whose server answered 503; never a write the server
// may have done.
func TestRequestsFailOver(t *testing.T) {
	var gets, posts atomic.Int32
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"name":"ams","tier":1}`))
			return
		}
		gets.Add(1)
		w.Write([]byte(`[]`))
	}))
	defer live.Close()
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		http.Error(w, `{"error":"starting"}`, http.StatusServiceUnavailable)
	}))
	defer unavailable.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	ctx := context.Background()

	c, err := New(closed+","+live.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sites(ctx); err != nil || gets.Load() != 1 || c.Addr() != live.URL {
		t.Fatalf("GET past a closed address: %v (%d gets, now at %s)", err, gets.Load(), c.Addr())
	}
	c, _ = New(closed+","+live.URL, "tok")
	if _, err := c.AddSite(ctx, SiteAdd{Name: "ams", Tier: 1}); err != nil || posts.Load() != 1 {
		t.Fatalf("POST past a closed address: %v (%d posts)", err, posts.Load())
	}
	c, _ = New(unavailable.URL+","+live.URL, "tok")
	if _, err := c.Sites(ctx); err != nil || gets.Load() != 2 {
		t.Fatalf("GET past a 503: %v (%d gets)", err, gets.Load())
	}
	c, _ = New(unavailable.URL+","+live.URL, "tok")
	if _, err := c.AddSite(ctx, SiteAdd{Name: "ams", Tier: 1}); StatusOf(err) != http.StatusServiceUnavailable || posts.Load() != 2 {
		t.Fatalf("a POST answered 503 was sent again elsewhere: %v (%d posts)", err, posts.Load())
	}
	c, _ = New(closed, "tok")
	if _, err := c.Sites(ctx); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("one closed address: %v", err)
	}
}
