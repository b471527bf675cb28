package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// serve runs an HTTPS server with cfg on loopback and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func get(addr, host string, o ClientOptions) error {
	cfg, err := ClientConfig(o)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(addr)
	resp, err := c.Get("https://" + net.JoinHostPort(host, port) + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestPinnedTrust(t *testing.T) {
	dir := t.TempDir()
	f, err := EnsureServerCert(filepath.Join(dir, "tls"), []string{"127.0.0.1", "localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	cfg, pin, err := ServerConfig(ServerOptions{CertFile: f.Cert, KeyFile: f.Key})
	if err != nil {
		t.Fatal(err)
	}
	if pin != f.CAPin() || !ValidPin(pin) {
		t.Fatalf("server pin %s, CA pin %s", pin, f.CAPin())
	}
	addr := serve(t, cfg)

	if err := get(addr, "127.0.0.1", ClientOptions{Pin: pin, ServerName: "127.0.0.1"}); err != nil {
		t.Fatalf("pinned by IP: %v", err)
	}
	if err := get(addr, "localhost", ClientOptions{Pin: pin}); err != nil {
		t.Fatalf("pinned by name: %v", err)
	}
	if err := get(addr, "127.0.0.1", ClientOptions{CAFile: f.CA}); err != nil {
		t.Fatalf("CA file: %v", err)
	}
	if err := get(addr, "127.0.0.1", ClientOptions{CAFile: f.CA, Pin: pin}); err != nil {
		t.Fatalf("CA file and pin: %v", err)
	}

	// Another CA's pin, the system roots, and a name the certificate does not carry all fail.
	other, _ := EnsureServerCert(filepath.Join(dir, "other"), []string{"127.0.0.1"}, now)
	var pe *PinError
	if err := get(addr, "127.0.0.1", ClientOptions{Pin: other.CAPin(), ServerName: "127.0.0.1"}); !errors.As(err, &pe) {
		t.Fatalf("wrong pin: %v", err)
	}
	if err := get(addr, "127.0.0.1", ClientOptions{CAFile: other.CA}); err == nil {
		t.Fatal("another CA file was accepted")
	}
	if err := get(addr, "127.0.0.1", ClientOptions{}); err == nil {
		t.Fatal("system roots accepted the server's own CA")
	}
	if err := get(addr, "127.0.0.1", ClientOptions{Pin: pin, ServerName: "ferry.example.org"}); err == nil || !strings.Contains(err.Error(), "ferry.example.org") {
		t.Fatalf("wrong name: %v", err)
	}
	if _, err := ClientConfig(ClientOptions{Pin: "abc"}); err == nil {
		t.Fatal("malformed pin accepted")
	}
}

func TestReuseAndReissue(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "tls")
	f1, err := EnsureServerCert(dir, []string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert1, _ := os.ReadFile(f1.Cert)
	f2, _ := EnsureServerCert(dir, []string{"127.0.0.1"}, now.Add(time.Hour))
	cert2, _ := os.ReadFile(f2.Cert)
	if string(cert1) != string(cert2) || f1.CAPin() != f2.CAPin() {
		t.Fatal("a second start did not re-use the certificate")
	}
	// A new name, or an expiry close at hand, re-issues the server certificate under the same CA.
	f3, _ := EnsureServerCert(dir, []string{"127.0.0.1", "ferry.example.org"}, now)
	cert3, _ := os.ReadFile(f3.Cert)
	f4, _ := EnsureServerCert(dir, []string{"127.0.0.1", "ferry.example.org"}, now.Add(serverLifetime-renewBefore/2))
	cert4, _ := os.ReadFile(f4.Cert)
	if string(cert3) == string(cert2) || string(cert4) == string(cert3) || f3.CAPin() != f1.CAPin() || f4.CAPin() != f1.CAPin() {
		t.Fatal("certificate not re-issued under the same CA")
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		fi, _ := d.Info()
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
}

func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	f, _ := EnsureServerCert(filepath.Join(dir, "tls"), []string{"127.0.0.1"}, now)
	cfg, pin, err := ServerConfig(ServerOptions{CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	certPEM, keyPEM, err := f.IssueClient("ops", now)
	if err != nil {
		t.Fatal(err)
	}
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.key")
	os.WriteFile(cf, certPEM, 0o600)
	os.WriteFile(kf, keyPEM, 0o600)
	if err := get(addr, "127.0.0.1", ClientOptions{Pin: pin, ServerName: "127.0.0.1", CertFile: cf, KeyFile: kf}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := get(addr, "127.0.0.1", ClientOptions{Pin: pin, ServerName: "127.0.0.1"}); err == nil {
		t.Fatal("no client certificate, yet the server answered")
	}
	if _, err := ClientConfig(ClientOptions{CertFile: cf}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
