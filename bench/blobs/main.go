// Command blobs benchmarks Ferry's release repository: push throughput of a large signed bundle
// against a plain sequential write of the same size (dd with fsync), and blob download
// throughput with 1, 16 and 64 concurrent clients against nginx serving the same file, in the
// same run.
//
//	go run ./bench/blobs -size 1GiB
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

func main() {
	sizeMiB := flag.Int("mib", 1024, "payload size in MiB")
	clients := flag.String("clients", "1,16,64", "concurrent download clients")
	rounds := flag.Int("rounds", 1, "downloads per client")
	flag.Parse()
	if err := run(int64(*sizeMiB)<<20, *clients, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "blobs:", err)
		os.Exit(1)
	}
}

func freePort() string {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().String()
}

func run(size int64, clientList string, rounds int) error {
	dir, err := os.MkdirTemp("", "ferry-bench-blobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/ferry").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v: %s", err, out)
	}

	// A bundle with an incompressible payload, so its size is the payload's.
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "ferry.yaml"), []byte("app: big\nversion: 1.0.0\nclass: minor\n"), 0o644)
	pf, _ := os.Create(filepath.Join(src, "payload"))
	if _, err := io.CopyN(pf, rand.Reader, size); err != nil {
		return err
	}
	pf.Close()
	bundle := filepath.Join(dir, "big.tar.gz")
	bf, _ := os.Create(bundle)
	if _, _, err := release.Build(src, bf); err != nil {
		return err
	}
	bf.Close()
	os.RemoveAll(src)
	fi, _ := os.Stat(bundle)
	keys := filepath.Join(dir, "keys")
	signing.GenerateKeyPair(keys, "")
	priv, _ := signing.LoadSecretKey(filepath.Join(keys, signing.SecretKeyFile), "")
	if _, err := signing.SignFile(priv, bundle, "bench"); err != nil {
		return err
	}
	sig, _ := os.ReadFile(bundle + ".minisig")
	pub, _ := os.ReadFile(filepath.Join(keys, signing.PublicKeyFile))

	// Reference for push: a plain sequential write of the same bytes, synced.
	ddStart := time.Now()
	if out, err := exec.Command("dd", "if="+bundle, "of="+filepath.Join(dir, "dd.out"), "bs=1M", "conv=fsync").CombinedOutput(); err != nil {
		return fmt.Errorf("dd: %v: %s", err, out)
	}
	ddTime := time.Since(ddStart)
	os.Remove(filepath.Join(dir, "dd.out"))

	listen := freePort()
	data := filepath.Join(dir, "data")
	srv := exec.Command(bin, "server", "--data", data, "--listen", listen, "--log-level", "warn")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	addr := "http://" + listen
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	admin, err := client.WaitForServer(wctx, addr, filepath.Join(data, "admin.token"))
	cancel()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := admin.TrustKey(ctx, api.KeyTrust{PublicKey: string(pub)}); err != nil {
		return err
	}
	f, _ := os.Open(bundle)
	pushStart := time.Now()
	rel, err := admin.PushRelease(ctx, f, fi.Size(), sig)
	pushTime := time.Since(pushStart)
	f.Close()
	if err != nil {
		return err
	}
	blobPath := filepath.Join(data, "blobs", "sha256", rel.SHA256[:2], rel.SHA256)

	nginxAddr, stopNginx, err := startNginx(dir, blobPath)
	if err != nil {
		return err
	}
	defer stopNginx()

	fmt.Printf("== ferry blob benchmark: %.0f MiB bundle, %d CPUs, %s\n", float64(fi.Size())/(1<<20), runtime.NumCPU(), runtime.Version())
	mbps := func(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }
	fmt.Printf("push: %v → %.0f MiB/s (hash, fsync, verify archive and signature); dd with fsync: %v → %.0f MiB/s; ratio %.2f\n",
		pushTime.Round(time.Millisecond), mbps(fi.Size(), pushTime), ddTime.Round(time.Millisecond), mbps(fi.Size(), ddTime), ddTime.Seconds()/pushTime.Seconds())
	tok := strings.TrimSpace(readFile(filepath.Join(data, "admin.token")))
	for _, cs := range strings.Split(clientList, ",") {
		var n int
		fmt.Sscan(cs, &n)
		ft, err := download(addr+"/v1/blobs/sha256:"+rel.SHA256, tok, n, rounds, fi.Size())
		if err != nil {
			return err
		}
		nt, err := download("http://"+nginxAddr+"/blob", "", n, rounds, fi.Size())
		if err != nil {
			return err
		}
		total := fi.Size() * int64(n*rounds)
		fmt.Printf("download, %2d clients: ferry %.0f MiB/s, nginx %.0f MiB/s → ferry/nginx %.2f\n", n, mbps(total, ft), mbps(total, nt), nt.Seconds()/ft.Seconds())
	}
	return nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// download fetches url with n concurrent clients, rounds times each, checking every length.
func download(url, tok string, n, rounds int, size int64) (time.Duration, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	errc := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for r := 0; r < rounds; r++ {
				req, _ := http.NewRequest("GET", url, nil)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := hc.Do(req)
				if err != nil {
					errc <- err
					return
				}
				got, err := io.CopyBuffer(io.Discard, resp.Body, buf)
				resp.Body.Close()
				if err != nil || got != size {
					errc <- fmt.Errorf("%s: got %d of %d bytes: %v", url, got, size, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return time.Since(start), <-errc
}

// startNginx serves file as /blob with Debian's nginx on a loopback port, configured as a
// static file server would be in production (sendfile on, no access log).
func startNginx(dir, file string) (string, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("nginx is needed as the reference: apt-get install nginx-light")
	}
	nd := filepath.Join(dir, "nginx")
	os.MkdirAll(filepath.Join(nd, "www"), 0o755)
	if err := os.Link(file, filepath.Join(nd, "www", "blob")); err != nil {
		return "", nil, err
	}
	addr := freePort()
	conf := fmt.Sprintf(`worker_processes %d;
daemon off;
user root;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path %[2]s/tmp;
    proxy_temp_path %[2]s/tmp;
    fastcgi_temp_path %[2]s/tmp;
    uwsgi_temp_path %[2]s/tmp;
    scgi_temp_path %[2]s/tmp;
    server { listen %[3]s; root %[2]s/www; }
}
`, runtime.NumCPU(), nd, addr)
	os.WriteFile(filepath.Join(nd, "nginx.conf"), []byte(conf), 0o644)
	cmd := exec.Command(bin, "-c", filepath.Join(nd, "nginx.conf"), "-p", nd)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, func() { cmd.Process.Kill(); cmd.Wait() }, nil
}
