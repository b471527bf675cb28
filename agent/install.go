package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"aead.dev/minisign"
	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/clock"
	"github.com/ferryhq/ferry/labels"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"golang.org/x/sys/unix"
)

// An install fetches the release's blob (resuming a partial download with a Range request),
// checks its sha256 and its minisign signature against the keys this node trusts, unpacks it
// beside the running release and switches to it with one rename (run.go drives these steps), so
// the node is always at a whole release: a killed install leaves the old one in place.
//
// Layout under the data directory:
//
//	apps/APP/releases/DIR/       an unpacked release (DIR is its version, ':' written as '_')
//	apps/APP/releases/DIR.json   what it is: app, version, sha256, install time
//	apps/APP/current -> releases/DIR
//	apps/APP/run.json            the app's install state machine (run.go), ports
//	apps/APP/supervise/          the app's supervisor state: its processes, for adoption
//	apps/APP/logs/               the processes' logs (NAME.log) and the hooks' (_hooks.log)
//	downloads/SHA256.part        a download in progress
const (
	appsDir      = "apps"
	downloadsDir = "downloads"
	currentLink  = "current"
)

// installed describes the release an app's current link points at.
type installed struct {
	App         string    `json:"app"`
	Version     string    `json:"version"`
	SHA256      string    `json:"sha256"`
	InstalledAt time.Time `json:"installed_at"`
}

// permanentError marks a failure that retrying the same release cannot mend: its signature does
// not verify, or the bundle does not unpack or is not the assigned release. Other failures (the
// server away, a download that brought nothing or came damaged) are retried with backoff.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

type installer struct {
	dir           string
	api           *client.Client
	session       func() string
	pinned        []minisign.PublicKey
	allowUnsigned bool
	clk           clock.Clock
	log           *slog.Logger
	// fetched counts the blob bytes downloaded: the reconcile loop backs off further only
	// over failed tries that brought none.
	fetched atomic.Int64
	// full holds, per blob whose unpack filled the disk, the room left there after it: a retry
	// unpacks again only once there is more, rather than fill the disk under the running
	// release at every try.
	fullMu sync.Mutex
	full   map[string]int64
}

func (in *installer) appDir(app string) string { return filepath.Join(in.dir, appsDir, app) }

// removeApp removes an app's releases, logs and state. The directory is first renamed out of
// the way, so the app is gone in one step for whoever looks (a report being made meanwhile
// included), then deleted.
func (in *installer) removeApp(app string) error {
	gone := filepath.Join(in.dir, appsDir, "."+app+".removed")
	os.RemoveAll(gone) // what an interrupted removal left
	if err := os.Rename(in.appDir(app), gone); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(gone)
}

// versionDir names a version's directory: semantic versions hold no '/', and no '_' either,
// so writing the epoch's ':' as '_' cannot collide.
func versionDir(v string) string { return strings.ReplaceAll(v, ":", "_") }

// current returns what an app's current link points at.
func (in *installer) current(app string) (installed, bool) {
	target, err := os.Readlink(filepath.Join(in.appDir(app), currentLink))
	if err != nil {
		return installed{}, false
	}
	var cur installed
	if err := readJSON(filepath.Join(in.appDir(app), target+".json"), &cur); err != nil {
		return installed{}, false
	}
	return cur, true
}

// all returns every installed app, by name.
func (in *installer) all() map[string]installed {
	out := map[string]installed{}
	ents, _ := os.ReadDir(filepath.Join(in.dir, appsDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // an app being removed (removeApp); no app name starts with a dot
		}
		if cur, ok := in.current(e.Name()); ok {
			out[e.Name()] = cur
		}
	}
	return out
}

// checkAssignment checks what the server sent before any of it names a file: the app is a DNS
// label and the version a release version, so neither can climb out of the apps directory, and
// the digest is a sha256 in hex.
func checkAssignment(a api.Assignment) (release.Version, error) {
	if err := labels.CheckName("app name", a.App); err != nil {
		return release.Version{}, permanent("assignment: %v", err)
	}
	v, err := release.ParseVersion(a.Version)
	if err != nil {
		return release.Version{}, permanent("assignment: %v", err)
	}
	if len(a.SHA256) != 64 || strings.Trim(a.SHA256, "0123456789abcdef") != "" {
		return release.Version{}, permanent("assignment: bad sha256 %q", a.SHA256)
	}
	if a.Size < 0 {
		return release.Version{}, permanent("assignment: negative size %d", a.Size)
	}
	return v, nil
}

// prepare fetches and verifies a's release and unpacks it beside the running one, which it
// does not touch; it returns the release's directory name under apps/APP/releases. unpacking,
// when not nil, is called before the unpack and may stop it.
func (in *installer) prepare(ctx context.Context, a api.Assignment, unpacking func() error) (string, error) {
	want, err := checkAssignment(a)
	if err != nil {
		return "", err
	}
	var sig []byte
	var keys []minisign.PublicKey
	if a.Signature == "" {
		if !in.allowUnsigned {
			return "", permanent("%s@%s is unsigned and this agent installs only signed releases (start it with --allow-unsigned to accept unsigned ones)", a.App, a.Version)
		}
	} else {
		if sig, err = base64.StdEncoding.DecodeString(a.Signature); err != nil {
			return "", permanent("signature is not base64: %v", err)
		}
		if keys, err = in.trusted(ctx); err != nil {
			return "", err
		}
	}
	f, err := in.download(ctx, a)
	if err != nil {
		return "", err
	}
	defer f.Close()

	// One pass computes the sha256 and checks the signature.
	h := sha256.New()
	var verr error
	if sig != nil {
		_, verr = signing.NewVerifier(io.TeeReader(f, h)).Verify(sig, keys)
	} else if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		// Damaged on the way or at the source: drop it, and fetch it again on the next try.
		os.Remove(f.Name())
		return "", fmt.Errorf("downloaded blob has sha256 %s, want %s; not installing", got, a.SHA256)
	}
	if verr != nil {
		return "", permanent("%v; not installing", verr)
	}
	if unpacking != nil {
		if err := unpacking(); err != nil {
			return "", err
		}
	}

	releases := filepath.Join(in.appDir(a.App), "releases")
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return "", err
	}
	name := versionDir(a.Version)
	final := filepath.Join(releases, name)
	var have installed
	if readJSON(final+".json", &have) != nil || have.SHA256 != a.SHA256 || !isDir(final) {
		in.fullMu.Lock()
		room, filled := in.full[a.SHA256]
		in.fullMu.Unlock()
		if free := freeSpace(releases); filled && free >= 0 && free <= room {
			in.log.Info("not unpacking again: no more room than when it filled the disk", "app", a.App, "version", a.Version, "free", free)
			return "", noSpace(a, releases, free)
		}
		if err := in.unpack(f, a, want, releases, final); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				free := freeSpace(releases)
				in.fullMu.Lock()
				if in.full == nil {
					in.full = map[string]int64{}
				}
				in.full[a.SHA256] = free
				in.fullMu.Unlock()
				return "", noSpace(a, releases, free)
			}
			return "", err
		}
		in.fullMu.Lock()
		delete(in.full, a.SHA256)
		in.fullMu.Unlock()
	}
	cur := installed{App: a.App, Version: a.Version, SHA256: a.SHA256, InstalledAt: in.clk.Now().UTC()}
	if err := saveJSON(final+".json", cur); err != nil {
		return "", err
	}
	return name, nil
}

// currentDir returns the directory name of the app's current release; "" when there is none.
func (in *installer) currentDir(app string) string {
	target, err := os.Readlink(filepath.Join(in.appDir(app), currentLink))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

// switchTo points the app's current link at the release directory name, or removes the link
// when name is "" (a first install going back to nothing).
func (in *installer) switchTo(app, name string) error {
	if name == "" {
		err := os.Remove(filepath.Join(in.appDir(app), currentLink))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		syncDir(in.appDir(app))
		return nil
	}
	return switchLink(in.appDir(app), filepath.Join("releases", name))
}

// switched drops what an install no longer needs once its release is current: the download,
// and every release but keep (the new one and the one before it, to roll back to).
func (in *installer) switched(a api.Assignment, keep ...string) {
	os.Remove(filepath.Join(in.dir, downloadsDir, a.SHA256+".part"))
	in.prune(filepath.Join(in.appDir(a.App), "releases"), keep...)
}

// unpack writes the verified bundle into a scratch directory beside the releases and renames
// it into place, after checking it is the release it was assigned as.
func (in *installer) unpack(f *os.File, a api.Assignment, want release.Version, releases, final string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(releases, ".unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	m, err := release.Unpack(f, tmp, release.Limits{})
	if errors.Is(err, unix.ENOSPC) {
		return err // the disk's fault, not the bundle's: retried, as space may be freed
	}
	if err != nil {
		return permanent("%v", err)
	}
	// A republished release carries its original manifest: the epoch may differ, nothing else.
	got, _ := release.ParseVersion(m.Version)
	if m.App != a.App || got.Semver != want.Semver {
		return permanent("bundle is %s@%s, not the assigned %s@%s; not installing", m.App, m.Version, a.App, a.Version)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	syncDir(releases)
	return nil
}

// noSpace is the failure of an unpack that filled the disk (what it wrote is removed already):
// which release, where, and how much room there is (free, -1 when unknown).
func noSpace(a api.Assignment, releases string, free int64) error {
	room := "unknown"
	if free >= 0 {
		room = sizeText(free)
	}
	return fmt.Errorf("unpack %s %s: no space left on device (%s; %s free there, the bundle alone is %s); free some space and the agent tries again",
		a.App, a.Version, releases, room, sizeText(a.Size))
}

// freeSpace is how many bytes the agent may still write in dir's filesystem; -1 when unknown.
func freeSpace(dir string) int64 {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil {
		return -1
	}
	return int64(fs.Bavail) * fs.Bsize
}

// sizeText is n bytes for a person to read: 512 B, 1.5 KiB, 20.0 MiB.
func sizeText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// switchLink points dir/current at target by renaming a new symlink over it: atomic.
func switchLink(dir, target string) error {
	tmp := filepath.Join(dir, "."+currentLink+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentLink)); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// prune keeps the current release and the one before it (for a quick way back) and removes
// the rest, with any scratch directories a crash left.
func (in *installer) prune(releases string, keep ...string) {
	ents, err := os.ReadDir(releases)
	if err != nil {
		return
	}
	for _, e := range ents {
		base := strings.TrimSuffix(e.Name(), ".json")
		kept := false
		for _, k := range keep {
			kept = kept || (k != "" && base == k)
		}
		if !kept {
			if err := os.RemoveAll(filepath.Join(releases, e.Name())); err != nil {
				in.log.Warn("prune old release", "path", e.Name(), "err", err)
			}
		}
	}
}

// trusted returns the keys a signature must verify against: the keys pinned on this node when
// there are any, else the keys the server trusts; never one the server lists as revoked.
func (in *installer) trusted(ctx context.Context) ([]minisign.PublicKey, error) {
	list, err := in.api.AgentKeys(ctx, in.session())
	if err != nil {
		return nil, fmt.Errorf("fetch the trusted keys: %w", err)
	}
	revoked := map[uint64]bool{}
	var server []minisign.PublicKey
	for _, k := range list {
		pub, err := signing.ParsePublicKey(k.PublicKey)
		if err != nil {
			continue
		}
		if k.RevokedAt != nil {
			revoked[pub.ID()] = true
		} else {
			server = append(server, pub)
		}
	}
	from := server
	if len(in.pinned) > 0 {
		from = in.pinned
	}
	var out []minisign.PublicKey
	for _, k := range from {
		if !revoked[k.ID()] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, permanent("no trusted, unrevoked signing key to verify against")
	}
	return out, nil
}

// download fetches a's blob into downloads/, resuming a partial file, and returns it open at
// its start.
func (in *installer) download(ctx context.Context, a api.Assignment) (*os.File, error) {
	dir := filepath.Join(in.dir, downloadsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, a.SHA256+".part"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := in.fetch(ctx, f, a); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// fetch fetches what f lacks of a's blob. A download cut off after bytes came resumes at once,
// from where it stopped, with a Range request: on a link that breaks, waiting only wastes the
// time it works. A try that brought nothing fails, and the caller retries it with backoff.
func (in *installer) fetch(ctx context.Context, f *os.File, a api.Assignment) error {
	for {
		n, err := in.fetchOnce(ctx, f, a)
		var perm permanentError
		if err == nil || n == 0 || ctx.Err() != nil || errors.As(err, &perm) {
			return err
		}
		in.log.Info("resuming download", "app", a.App, "version", a.Version, "err", err)
	}
}

// fetchOnce makes one request for what f lacks of a's blob and returns how many bytes came.
func (in *installer) fetchOnce(ctx context.Context, f *os.File, a api.Assignment) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	off := fi.Size()
	if off > a.Size {
		off = 0
	}
	if off == a.Size {
		return 0, nil
	}
	token := in.session()
	if token == "" {
		return 0, errors.New("no session with the server yet")
	}
	body, start, err := in.api.Blob(ctx, token, a.SHA256, off)
	if err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	defer body.Close()
	if err := f.Truncate(start); err != nil {
		return 0, err
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.LimitReader(body, a.Size-start+1))
	in.fetched.Add(n)
	got := start + n
	if serr := f.Sync(); serr != nil && err == nil {
		err = serr
	}
	switch {
	case got > a.Size:
		f.Truncate(0)
		return n, permanent("server sent more than the release's %d bytes", a.Size)
	case err != nil:
		return n, fmt.Errorf("download cut off at %d of %d bytes (will resume): %w", got, a.Size, err)
	case got < a.Size:
		return n, fmt.Errorf("download cut off at %d of %d bytes (will resume)", got, a.Size)
	}
	return n, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
