// Command blobs benchmarks Ferry's release repository: push throughput of a large signed bundle
// against a plain sequential write of the same size (dd with fsync), and blob download
// throughput with 1, 16 and 64 concurrent clients against nginx serving the same file, in the
// same run.
//
// With -transport both (the default) there are two pairs: ferry started with --insecure-http
// against nginx without TLS, and ferry serving TLS with the certificate it made for itself
// against nginx serving TLS with that same certificate and key. The download clients trust the
// ferry server's ca.pem. -cpuprofile DIR runs bench/profserver (the same server with a CPU
// profile switch) and writes a profile of the server process for each ferry download.
//
//	go run ./bench/blobs -mib 1024
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/bench/internal/fleet"
	"github.com/ferryhq/ferry/bench/internal/profctl"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
)

func main() {
	sizeMiB := flag.Int("mib", 1024, "payload size in MiB")
	clients := flag.String("clients", "1,16,64", "concurrent download clients")
	rounds := flag.Int("rounds", 1, "downloads per client")
	transport := flag.String("transport", "both", "plain (ferry --insecure-http against nginx without TLS), tls (both with TLS), or both")
	profile := flag.String("cpuprofile", "", "directory for CPU profiles of ferry's server process, one per ferry download (runs bench/profserver)")
	readKiB := flag.Int("read-kib", 256, "bytes each download client reads at a time, in KiB; 0 lets io.Discard pick (8 KiB, as this harness did before)")
	bin := flag.String("ferry", "", "server binary (default: build ./cmd/ferry, or ./bench/profserver with -cpuprofile)")
	flag.Parse()
	modes, err := profctl.Modes(*transport)
	if err != nil {
		fmt.Fprintln(os.Stderr, "blobs:", err)
		os.Exit(2)
	}
	var ns []int
	for _, cs := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(cs))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "blobs: bad -clients entry %q\n", cs)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	if err := run(int64(*sizeMiB)<<20, ns, *rounds, modes, *profile, *bin, *readKiB<<10); err != nil {
		fmt.Fprintln(os.Stderr, "blobs:", err)
		os.Exit(1)
	}
}

// ferryServer is one ferry server process of the benchmark, plain or TLS.
type ferryServer struct {
	mode    string
	cmd     *exec.Cmd
	data    string
	addr    string // base URL
	admin   *client.Client
	tls     *tls.Config // what the download clients trust: the server's own ca.pem
	control string      // profserver's control port, when profiling
	blob    string      // the pushed blob's file
	push    time.Duration
}

func (f *ferryServer) stop() { f.cmd.Process.Kill(); f.cmd.Wait() }

// startFerry starts a server in data: `ferry server --insecure-http` for plain, or the default
// TLS with the CA and certificate it makes for itself under data/tls.
func startFerry(bin, mode, data string, profiling bool) (*ferryServer, error) {
	listen := fleet.FreePort()
	args := []string{"--data", data, "--listen", listen}
	if !profiling {
		args = append([]string{"server"}, append(args, "--log-level", "warn")...)
	}
	f := &ferryServer{mode: mode, data: data, addr: "https://" + listen}
	if mode == "plain" {
		args = append(args, "--insecure-http")
		f.addr = "http://" + listen
	}
	if profiling {
		f.control = fleet.FreePort()
		args = append(args, "--control", f.control)
	}
	f.cmd = exec.Command(bin, args...)
	f.cmd.Stderr = os.Stderr
	if err := f.cmd.Start(); err != nil {
		return nil, err
	}
	caFile := filepath.Join(data, "tls", "ca.pem")
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	admin, err := client.WaitForServer(wctx, f.addr, filepath.Join(data, "admin.token"), pki.ClientOptions{CAFile: caFile})
	cancel()
	if err != nil {
		f.stop()
		return nil, err
	}
	f.admin = admin
	if mode == "tls" {
		if f.tls, err = pki.ClientConfig(pki.ClientOptions{CAFile: caFile}); err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

// profile starts (file != "") or stops a CPU profile of a profserver.
func (f *ferryServer) profile(file string) error {
	switch {
	case f.control == "":
		return nil
	case file == "":
		return profctl.Stop(f.control)
	}
	return profctl.Start(f.control, file)
}

// measured is one download run: its time, the CPU the serving process (nginx: master and
// workers) and this process (the clients) used meanwhile, and the TLS parameters negotiated.
type measured struct {
	took              time.Duration
	serverCPU, ownCPU float64 // seconds
	tlsParams         string
}

func run(size int64, ns []int, rounds int, modes []string, profile, bin string, readSize int) error {
	dir, err := os.MkdirTemp("", "ferry-bench-blobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin, err = profctl.Build(dir, bin, profile); err != nil {
		return err
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

	// One ferry server per transport, each with its own data and its own push of the bundle.
	ctx := context.Background()
	servers := map[string]*ferryServer{}
	for _, mode := range modes {
		f, err := startFerry(bin, mode, filepath.Join(dir, "data-"+mode), profile != "")
		if err != nil {
			return fmt.Errorf("%s server: %w", mode, err)
		}
		defer f.stop()
		servers[mode] = f
		if _, err := f.admin.TrustKey(ctx, api.KeyTrust{PublicKey: string(pub)}); err != nil {
			return err
		}
		bf, _ := os.Open(bundle)
		pushStart := time.Now()
		rel, err := f.admin.PushRelease(ctx, bf, fi.Size(), sig)
		f.push = time.Since(pushStart)
		bf.Close()
		if err != nil {
			return fmt.Errorf("%s push: %w", mode, err)
		}
		f.blob = filepath.Join(f.data, "blobs", "sha256", rel.SHA256[:2], rel.SHA256)
	}

	ng, err := startNginx(dir, servers)
	if err != nil {
		return err
	}
	defer ng.stop()

	fmt.Printf("== ferry blob benchmark: %.0f MiB bundle, %d CPUs (%s), %s, clients read %s at a time\n",
		float64(fi.Size())/(1<<20), runtime.NumCPU(), fleet.CPUModel(), runtime.Version(), readSizeName(readSize))
	mbps := func(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }
	fmt.Printf("dd with fsync: %v → %.0f MiB/s\n", ddTime.Round(time.Millisecond), mbps(fi.Size(), ddTime))
	for _, mode := range modes {
		f := servers[mode]
		fmt.Printf("push (%s): %v → %.0f MiB/s (hash, fsync, verify archive and signature); ratio to dd %.2f\n",
			mode, f.push.Round(time.Millisecond), mbps(fi.Size(), f.push), ddTime.Seconds()/f.push.Seconds())
	}
	type row struct{ ferry, nginx measured }
	results := map[string]map[int]row{}
	for _, n := range ns {
		total := fi.Size() * int64(n*rounds)
		gib := float64(total) / (1 << 30)
		// The two servers of a pair take turns, and the pairs too, so drift on the machine
		// touches both sides of a ratio alike.
		for _, mode := range modes {
			f := servers[mode]
			tok := strings.TrimSpace(readFile(filepath.Join(f.data, "admin.token")))
			if profile != "" {
				if err := f.profile(filepath.Join(profile, fmt.Sprintf("ferry-%s-%dc.pprof", mode, n))); err != nil {
					return err
				}
			}
			fm, err := download(f.addr+"/v1/blobs/sha256:"+filepath.Base(f.blob), tok, n, rounds, fi.Size(), f.tls, f.cmd.Process.Pid, readSize)
			if err != nil {
				return err
			}
			if err := f.profile(""); err != nil {
				return err
			}
			nm, err := download(ng.url[mode]+"/blob", "", n, rounds, fi.Size(), f.tls, ng.cmd.Process.Pid, readSize)
			if err != nil {
				return err
			}
			if results[mode] == nil {
				results[mode] = map[int]row{}
			}
			results[mode][n] = row{fm, nm}
			fmt.Printf("download (%s), %2d clients: ferry %.0f MiB/s, nginx %.0f MiB/s → ferry/nginx %.2f | CPU s/GiB: ferry %.2f (clients %.2f), nginx %.2f (clients %.2f)%s\n",
				mode, n, mbps(total, fm.took), mbps(total, nm.took), nm.took.Seconds()/fm.took.Seconds(),
				fm.serverCPU/gib, fm.ownCPU/gib, nm.serverCPU/gib, nm.ownCPU/gib, tlsNote(fm, nm))
		}
	}

	// The side-by-side table, in BENCHMARKS.md's form.
	fmt.Printf("\n| clients |")
	for _, mode := range modes {
		fmt.Printf(" ferry %[1]s | nginx %[1]s | ratio %[1]s |", mode)
	}
	if len(modes) == 2 {
		fmt.Printf(" ferry TLS/plain |")
	}
	fmt.Printf("\n| ---: |%s", strings.Repeat(" ---: | ---: | ---: |", len(modes)))
	if len(modes) == 2 {
		fmt.Printf(" ---: |")
	}
	fmt.Println()
	for _, n := range ns {
		total := fi.Size() * int64(n*rounds)
		fmt.Printf("| %d |", n)
		for _, mode := range modes {
			r := results[mode][n]
			fmt.Printf(" %.0f MiB/s | %.0f MiB/s | %.2f × |", mbps(total, r.ferry.took), mbps(total, r.nginx.took), r.nginx.took.Seconds()/r.ferry.took.Seconds())
		}
		if len(modes) == 2 {
			fmt.Printf(" %.2f × |", results["plain"][n].ferry.took.Seconds()/results["tls"][n].ferry.took.Seconds())
		}
		fmt.Println()
	}
	return nil
}

func tlsNote(f, n measured) string {
	if f.tlsParams == "" {
		return ""
	}
	return fmt.Sprintf(" | ferry %s, nginx %s", f.tlsParams, n.tlsParams)
}

// writerOnly hides a writer's ReadFrom, so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func readSizeName(n int) string {
	if n == 0 {
		return "8 KiB (io.Discard)"
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// download fetches url with n concurrent clients, rounds times each, checking every length,
// and measures the CPU the serving process pid (with its children) and this process used.
// Each client reads readSize bytes at a time (0: whatever io.Discard's ReadFrom reads).
func download(url, tok string, n, rounds int, size int64, tlsCfg *tls.Config, pid int, readSize int) (measured, error) {
	var m measured
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true, TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var once sync.Once
	errc := make(chan error, n)
	srv0, own0 := treeCPU(pid), ownCPU()
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst io.Writer = io.Discard
			var buf []byte
			if readSize > 0 {
				// Hide io.Discard's ReadFrom, which reads 8 KiB at a time: the clients share
				// the two cores with the server, and smaller reads make them cost more.
				dst, buf = writerOnly{io.Discard}, make([]byte, readSize)
			}
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
				if resp.TLS != nil {
					once.Do(func() {
						m.tlsParams = tls.VersionName(resp.TLS.Version) + " " + tls.CipherSuiteName(resp.TLS.CipherSuite)
					})
				}
				got, err := io.CopyBuffer(dst, resp.Body, buf)
				resp.Body.Close()
				if err != nil || got != size {
					errc <- fmt.Errorf("%s: got %d of %d bytes: %v", url, got, size, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	m.took = time.Since(start)
	m.serverCPU, m.ownCPU = treeCPU(pid)-srv0, ownCPU()-own0
	close(errc)
	return m, <-errc
}

// treeCPU is the user+system time, in seconds, of process pid and its children (nginx's
// workers), from /proc.
func treeCPU(pid int) float64 {
	ticks := procTicks(pid)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if ppid, t := procStat(child); ppid == pid {
			ticks += t
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

func procTicks(pid int) int64 {
	_, t := procStat(pid)
	return t
}

// procStat reads a process's parent and user+system clock ticks from /proc/PID/stat.
func procStat(pid int) (ppid int, ticks int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, u + st
}

// ownCPU is this process's user+system time in seconds.
func ownCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// nginxServer is Debian's nginx serving each ferry server's blob file as /blob.
type nginxServer struct {
	cmd *exec.Cmd
	url map[string]string // by mode
}

// stop asks the master for a fast shutdown (SIGTERM), which takes its workers with it; a
// SIGKILL would leave the workers running, holding the ports and the CPU.
func (n *nginxServer) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

// startNginx serves each ferry server's blob (hard-linked, so the page cache is shared) as
// /blob with Debian's nginx on loopback ports, configured as a static file server would be in
// production (sendfile on, no access log, one worker per CPU). Beside a TLS ferry, nginx serves
// TLS with that server's own certificate chain and key (DATA/tls/server.pem and server.key),
// TLS 1.3 enabled as in ferry (Debian 12's nginx 1.22 offers only up to 1.2 by default).
// nginx does not use sendfile on a TLS connection (no kernel TLS offload in this
// configuration): it reads the file and writes records, as ferry does.
func startNginx(dir string, servers map[string]*ferryServer) (*nginxServer, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nginx is needed as the reference: apt-get install nginx-light")
	}
	nd := filepath.Join(dir, "nginx")
	ng := &nginxServer{url: map[string]string{}}
	var blocks strings.Builder
	var addrs []string
	for mode, f := range servers {
		www := filepath.Join(nd, "www-"+mode)
		os.MkdirAll(www, 0o755) // nginx's workers run as another user and must read the (public) blob
		if err := os.Link(f.blob, filepath.Join(www, "blob")); err != nil {
			return nil, err
		}
		addr := fleet.FreePort()
		addrs = append(addrs, addr)
		if mode == "tls" {
			ng.url[mode] = "https://" + addr
			fmt.Fprintf(&blocks, `    server {
        listen %s ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate %s;
        ssl_certificate_key %s;
        root %s;
    }
`, addr, filepath.Join(f.data, "tls", "server.pem"), filepath.Join(f.data, "tls", "server.key"), www)
		} else {
			ng.url[mode] = "http://" + addr
			fmt.Fprintf(&blocks, "    server { listen %s; root %s; }\n", addr, www)
		}
	}
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
%[3]s}
`, runtime.NumCPU(), nd, blocks.String())
	os.WriteFile(filepath.Join(nd, "nginx.conf"), []byte(conf), 0o644)
	ng.cmd = exec.Command(bin, "-c", filepath.Join(nd, "nginx.conf"), "-p", nd)
	ng.cmd.Stderr = os.Stderr
	if err := ng.cmd.Start(); err != nil {
		return nil, err
	}
	for _, addr := range addrs {
		for i := 0; i < 200; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ng, nil
}
