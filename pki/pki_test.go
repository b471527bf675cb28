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

// Replicas share one CA, kept elsewhere as PEM: each writes its certificate and a server
// certificate of its own, never its key, and all have the CA's pin. A directory holding another
// CA (a server from before it joined) gets the shared one, and a server certificate it issued.
func TestSharedCA(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	made, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := made.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(b)
	if err != nil || ca.Pin() != made.Pin() || !ca.Key.Equal(made.Key) {
		t.Fatalf("ParseCA(MarshalPEM()) = %v, %v", ca.Pin(), err)
	}

	root := t.TempDir()
	first, _ := EnsureServerCert(filepath.Join(root, "b"), []string{"127.0.0.1"}, now) // a CA of its own
	var pins []string
	var caFiles []string
	for _, d := range []string{"a", "b"} {
		dir := filepath.Join(root, d)
		f, err := IssueServerCert(dir, ca, []string{"127.0.0.1", d + ".example.org"}, now)
		if err != nil {
			t.Fatal(err)
		}
		_, pin, err := ServerConfig(ServerOptions{CertFile: f.Cert, KeyFile: f.Key})
		if err != nil {
			t.Fatal(err)
		}
		if pin != ca.Pin() || f.CAPin() != ca.Pin() || f.CAKey != "" {
			t.Fatalf("%s: served pin %s, files' %s, CA key file %q; want %s and none", d, pin, f.CAPin(), f.CAKey, ca.Pin())
		}
		leaf, _ := ReadCerts(f.Cert)
		if !covers(leaf[0], []string{d + ".example.org"}) {
			t.Fatalf("%s: the server certificate names %v", d, leaf[0].DNSNames)
		}
		pem, _ := os.ReadFile(f.CA)
		caFiles = append(caFiles, string(pem))
		pins = append(pins, pin)
		again, _ := IssueServerCert(dir, ca, []string{"127.0.0.1", d + ".example.org"}, now.Add(time.Hour))
		if c1, c2 := read(t, f.Cert), read(t, again.Cert); c1 != c2 {
			t.Fatalf("%s: a second start did not re-use the server certificate", d)
		}
	}
	if caFiles[0] != caFiles[1] || pins[0] != pins[1] || first.CAPin() == pins[1] {
		t.Fatal("the replicas' ca.pem or pins differ")
	}
	if _, err := os.Stat(filepath.Join(root, "a", "ca.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the shared CA's key was written: %v", err)
	}
	// The directory that had a CA of its own still holds that CA's key; its ca.pem is now the
	// shared CA's, so it no longer loads as a CA.
	if _, err := LoadCA(filepath.Join(root, "b")); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadCA of a shared CA's certificate with another key: %v", err)
	}
	if _, err := LoadCA(filepath.Join(root, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadCA without a key: %v", err)
	}
	other, _ := EnsureServerCert(filepath.Join(root, "c"), nil, now)
	if got, err := LoadCA(filepath.Join(root, "c")); err != nil || got.Pin() != other.CAPin() {
		t.Fatalf("LoadCA = %v, %v; want %s", got.Pin(), err, other.CAPin())
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		fi, _ := d.Info()
		if want := fs.FileMode(0o600); !d.IsDir() && fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})

	leaf, _ := ReadCerts(filepath.Join(root, "a", "server.pem"))
	otherKey, _ := NewCA(now)
	for _, bad := range []struct {
		what string
		pem  []byte
	}{
		{"nothing", nil},
		{"the certificate alone", pemBlock("CERTIFICATE", ca.Cert.Raw)},
		{"another CA's key", append(pemBlock("CERTIFICATE", ca.Cert.Raw), mustPEM(t, otherKey)[len(pemBlock("CERTIFICATE", otherKey.Cert.Raw)):]...)},
		{"a server certificate", append(pemBlock("CERTIFICATE", leaf[0].Raw), b[len(pemBlock("CERTIFICATE", ca.Cert.Raw)):]...)},
		{"two certificates", append(pemBlock("CERTIFICATE", ca.Cert.Raw), b...)},
		{"garbage", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")},
	} {
		if _, err := ParseCA(bad.pem); err == nil {
			t.Errorf("ParseCA of %s: no error", bad.what)
		}
	}
}

func read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustPEM(t *testing.T, ca CA) []byte {
	t.Helper()
	b, err := ca.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
