package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
)

// Identity is a virtual agent's: the node name it enrolled under, its key, and the session it
// opened.
type Identity struct {
	Name    string
	Key     ed25519.PrivateKey
	Session string
}

// EnrollVirtual enrolls a virtual agent named name with token (and labels, which may be nil)
// under a new key, as `ferry agent` does (enroll, then a signed challenge for a session).
func EnrollVirtual(ctx context.Context, c *client.Client, token, name string, labels map[string]string) (Identity, error) {
	id := Identity{Name: name}
	_, id.Key, _ = ed25519.GenerateKey(rand.Reader)
	pk := base64.StdEncoding.EncodeToString(id.Key.Public().(ed25519.PublicKey))
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(id.Key, api.EnrollMessage(token, name, pk)))
	if _, err := c.Enroll(ctx, api.Enroll{Token: token, Name: name, PublicKey: pk, Labels: labels, Signature: sig}); err != nil {
		return id, err
	}
	return id, id.Renew(ctx, c)
}

// Renew opens a new session for the agent (a signed challenge), as an agent does when the
// server no longer knows its session.
func (id *Identity) Renew(ctx context.Context, c *client.Client) error {
	ch, err := c.Challenge(ctx, id.Name)
	if err != nil {
		return err
	}
	s, err := c.Session(ctx, api.SessionRequest{Node: id.Name, Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(id.Key, api.SessionMessage(id.Name, ch.Nonce)))})
	id.Session = s.Token
	return err
}

// Parallel calls fn(i) for i in [0, n) on width goroutines and returns the first error; after
// one, the goroutines take no new i.
func Parallel(n, width int, fn func(int) error) error {
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	var next atomic.Int64
	var failed atomic.Bool
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// FreePort returns a loopback address no one listens on now.
func FreePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// Percentile returns the p-th percentile of sorted durations (0 when there are none), rounded
// to the millisecond.
func Percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)].Round(time.Millisecond)
}
