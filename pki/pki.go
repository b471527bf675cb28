// Package pki is Ferry's TLS trust: the CA a server makes for itself on first start (which
// replicas share) and the server certificate each issues with it, the CA pin that enrollment
// tokens carry, and client configurations that verify a server against that pin or an
// operator's CA file, with an optional client certificate.
//
// A pin is the SHA-256 of a CA certificate's SubjectPublicKeyInfo, in lower-case hex, as
// kubeadm's discovery hash: it survives re-issuing the CA certificate with the same key, and a
// token carrying it lets a new agent trust exactly that CA from its first byte.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Pin returns the pin of a certificate: the hex SHA-256 of its public key info.
func Pin(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// ValidPin reports whether s has the shape of a pin.
func ValidPin(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Files are the TLS files a server makes for itself under DATA/tls.
type Files struct {
	CA     string // ca.pem: the CA certificate operators and agents trust
	CAKey  string // ca.key: signs server certificates; empty when IssueServerCert wrote the files
	Cert   string // server.pem: the server certificate followed by the CA certificate
	Key    string // server.key
	Dir    string
	caCert *x509.Certificate
}

// Lifetimes of what EnsureServerCert makes. A server certificate is re-issued at start when it
// expires within renewBefore, or no longer names every host the server is reached by.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 2 * 365 * 24 * time.Hour
	renewBefore    = 60 * 24 * time.Hour
)

// EnsureServerCert makes, on first use, a CA and a server certificate for hosts (DNS names and
// IP addresses) under dir, and re-uses them afterwards. The keys are ECDSA P-256, which every
// browser accepts. Every file is 0600 and dir 0700, whatever the umask.
func EnsureServerCert(dir string, hosts []string, now time.Time) (Files, error) {
	f := filesIn(dir)
	if err := privateDir(dir); err != nil {
		return f, err
	}
	ca, err := LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		if ca, err = NewCA(now); err == nil {
			err = writeCA(f, ca)
		}
	}
	if err != nil {
		return f, fmt.Errorf("server CA in %s: %w", dir, err)
	}
	return serverCert(f, ca, hosts, now)
}

// IssueServerCert is EnsureServerCert with a CA kept elsewhere (replicas keep theirs in their
// database): it writes ca's certificate to dir/ca.pem, replacing whatever was there, and makes a
// server certificate that ca issues for hosts, or re-uses the one in dir when ca issued it. It
// does not write the CA's key, and leaves a ca.key already in dir alone.
func IssueServerCert(dir string, ca CA, hosts []string, now time.Time) (Files, error) {
	f := filesIn(dir)
	f.CAKey = ""
	if err := privateDir(dir); err != nil {
		return f, err
	}
	if err := WriteSecret(f.CA, pemBlock("CERTIFICATE", ca.Cert.Raw)); err != nil {
		return f, fmt.Errorf("server CA in %s: %w", dir, err)
	}
	return serverCert(f, ca, hosts, now)
}

func filesIn(dir string) Files {
	return Files{Dir: dir, CA: filepath.Join(dir, "ca.pem"), CAKey: filepath.Join(dir, "ca.key"),
		Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}
}

// privateDir makes dir, 0700 whatever the umask.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// serverCert re-uses the server certificate in f when ca issued it, it names every host and it
// expires no sooner than renewBefore; otherwise it issues a new one.
func serverCert(f Files, ca CA, hosts []string, now time.Time) (Files, error) {
	f.caCert = ca.Cert
	leaf, _, err := loadPair(f.Cert, f.Key)
	if err == nil && leaf.CheckSignatureFrom(ca.Cert) == nil && now.Add(renewBefore).Before(leaf.NotAfter) && covers(leaf, hosts) {
		return f, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return f, fmt.Errorf("server certificate in %s: %w (move it away to have a new one made)", f.Dir, err)
	}
	if err := makeServerCert(f, ca.Cert, ca.Key, hosts, now); err != nil {
		return f, fmt.Errorf("server certificate in %s: %w", f.Dir, err)
	}
	return f, nil
}

// CAPin is the pin of the CA that EnsureServerCert made or found.
func (f Files) CAPin() string { return Pin(f.caCert) }

// CA is a certificate authority that issues server certificates: the one a server makes for
// itself, which every replica of a cluster shares.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a CA: an ECDSA P-256 key and a self-signed certificate valid for ten years.
func NewCA(now time.Time) (CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Ferry CA " + host, Organization: []string{"Ferry"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return CA{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CA{}, err
	}
	return CA{Cert: cert, Key: key}, nil
}

// Pin is the pin of the CA's certificate.
func (ca CA) Pin() string { return Pin(ca.Cert) }

// MarshalPEM returns the CA's certificate and then its key (PKCS #8), both PEM: what ParseCA
// reads back.
func (ca CA) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return append(pemBlock("CERTIFICATE", ca.Cert.Raw), pemBlock("PRIVATE KEY", der)...), nil
}

// ParseCA reads a CA that MarshalPEM wrote: a CA certificate and its ECDSA key.
func ParseCA(b []byte) (CA, error) {
	var ca CA
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			if ca.Cert != nil {
				return CA{}, errors.New("CA: more than one certificate")
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return CA{}, fmt.Errorf("CA certificate: %w", err)
			}
			ca.Cert = c
		case "PRIVATE KEY":
			if ca.Key != nil {
				return CA{}, errors.New("CA: more than one key")
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return CA{}, fmt.Errorf("CA key: %w", err)
			}
			key, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return CA{}, errors.New("CA key: not an ECDSA key")
			}
			ca.Key = key
		}
	}
	switch {
	case ca.Cert == nil || ca.Key == nil:
		return CA{}, errors.New("CA: want a PEM certificate and its PEM key")
	case !ca.Cert.IsCA:
		return CA{}, errors.New("CA: the certificate is not a CA's")
	case !ca.Key.PublicKey.Equal(ca.Cert.PublicKey):
		return CA{}, errors.New("CA: the key is not the certificate's")
	}
	return ca, nil
}

// LoadCA reads the CA that EnsureServerCert keeps under dir, ca.pem and ca.key; the error wraps
// os.ErrNotExist when either is missing.
func LoadCA(dir string) (CA, error) {
	f := filesIn(dir)
	cert, key, err := loadPair(f.CA, f.CAKey)
	if err != nil {
		return CA{}, err
	}
	return CA{Cert: cert, Key: key}, nil
}

// writeCA writes a new CA's files, the key first: a CA certificate without its key would be
// re-used and be useless.
func writeCA(f Files, ca CA) error {
	if err := writeKey(f.CAKey, ca.Key); err != nil {
		return err
	}
	return WriteSecret(f.CA, pemBlock("CERTIFICATE", ca.Cert.Raw))
}

func makeServerCert(f Files, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "ferry server", Organization: []string{"Ferry"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeKey(f.Key, key); err != nil {
		return err
	}
	// The chain goes with the certificate, so a client holding only the pin finds the CA.
	return WriteSecret(f.Cert, append(pemBlock("CERTIFICATE", der), pemBlock("CERTIFICATE", ca.Raw)...))
}

// covers reports whether the certificate names every host.
func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKey(file string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return WriteSecret(file, pemBlock("PRIVATE KEY", der))
}

// WriteSecret writes key material: mode 0600 whatever the umask, through a synced temporary
// file and a rename, so a crash leaves the old file or the new one, never half of either.
func WriteSecret(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// loadPair reads a certificate (the first of the file) and its ECDSA key.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certs, err := ReadCerts(certFile)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	return certs[0], key, nil
}

// ReadCerts reads every certificate of a PEM file, in order.
func ReadCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return out, nil
}

// CertPool reads a PEM file of CA certificates into a pool.
func CertPool(file string) (*x509.CertPool, error) {
	certs, err := ReadCerts(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ServerOptions configure a server's TLS.
type ServerOptions struct {
	// CertFile and KeyFile are the server's certificate (followed by its chain) and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, requires every client to present a certificate from that CA.
	ClientCAFile string
}

// ServerConfig loads a server's TLS configuration and returns with it the pin enrollment tokens
// should carry: the pin of the last certificate of CertFile's chain (the CA when the chain
// includes it, as EnsureServerCert's does).
func ServerConfig(o ServerOptions) (*tls.Config, string, error) {
	pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, "", fmt.Errorf("TLS certificate: %w", err)
	}
	certs, err := ReadCerts(o.CertFile)
	if err != nil {
		return nil, "", err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
		// HTTP/1.1 only: agent streams upgrade the connection, which HTTP/2 cannot.
		NextProtos: []string{"http/1.1"},
	}
	if o.ClientCAFile != "" {
		pool, err := CertPool(o.ClientCAFile)
		if err != nil {
			return nil, "", fmt.Errorf("--client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, Pin(certs[len(certs)-1]), nil
}

// ClientOptions say how a client trusts a server and proves itself.
type ClientOptions struct {
	// CAFile verifies the server against these CAs instead of the system's.
	CAFile string
	// Pin, when set, requires the server's chain to hold a certificate with this pin and the
	// server certificate to be issued through it. With no CAFile, nothing else is trusted.
	Pin string
	// CertFile and KeyFile are the client certificate for servers that require one.
	CertFile, KeyFile string
	// ServerName is the name (or IP address) the server is dialled by, which its certificate
	// must carry; TLS does not report IP addresses back to a pin check, so it is given here.
	ServerName string
}

// PinError says a server's chain does not hold the pinned CA.
type PinError struct{ Want string }

func (e *PinError) Error() string {
	return fmt.Sprintf("its certificate chain does not hold the pinned CA (sha256 %s…)", e.Want[:12])
}

// ClientConfig builds the TLS configuration of a Ferry client.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pool, err := CertPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("give both a client certificate and its key, or neither")
	}
	if o.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if o.Pin == "" {
		return cfg, nil
	}
	if !ValidPin(o.Pin) {
		return nil, fmt.Errorf("invalid CA pin %q: want 64 hex digits", o.Pin)
	}
	pin := strings.ToLower(o.Pin)
	if o.CAFile == "" {
		// The pinned CA is the only root: the usual verification is replaced by verifyPinned,
		// which checks the whole chain and the server's name.
		cfg.InsecureSkipVerify = true
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		name := o.ServerName
		if name == "" {
			name = cs.ServerName
		}
		return verifyPinned(cs, pin, name)
	}
	return cfg, nil
}

// verifyPinned checks that the server's chain holds the pinned certificate and that the server
// certificate is valid for the name dialled, issued through the pinned one.
func verifyPinned(cs tls.ConnectionState, pin, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return &PinError{Want: pin}
	}
	roots := x509.NewCertPool()
	inter := x509.NewCertPool()
	found := false
	for _, c := range cs.PeerCertificates {
		if Pin(c) == pin {
			roots.AddCert(c)
			found = true
		} else {
			inter.AddCert(c)
		}
	}
	if !found {
		return &PinError{Want: pin}
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}

// IssueClient signs a client certificate for name with the CA that EnsureServerCert made, for
// servers started with --client-ca pointing at that CA. It returns the certificate and key as PEM.
func (f Files) IssueClient(name string, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, caKey, err := loadPair(f.CA, f.CAKey)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Ferry"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder), nil
}
