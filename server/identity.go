package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/pki"
	"github.com/ferryhq/ferry/seal"
	"github.com/ferryhq/ferry/store"
)

// The replicas of one cluster share an identity through the store: the secret that signs agent
// sessions and challenges, and the CA that issues each replica's server certificate (unless the
// operator serves their own with --tls-cert). Both are sealed under the cluster key, which each
// replica reads from a file of its own and the database never holds, so that reading the
// database alone forges nothing. The first replica to start puts them; every other takes them.

// Names of the secrets replicas share through the store.
const (
	secretSession = "session"
	secretCA      = "ca"
)

// identity is what a replica serves with.
type identity struct {
	secret      []byte      // signs sessions and challenges
	tls         *tls.Config // nil over plain HTTP
	pin, caFile string      // see Server.CAPin and Server.CAFile
	key         *seal.Key   // seals what else the cluster keeps secret in the store (webhooks' keys)
}

// loadIdentity takes the cluster's shared secrets from the store, putting them there first when
// this replica is the first, and sets up TLS with them.
func loadIdentity(ctx context.Context, cfg Config, st store.Store, clusterKey []byte) (identity, error) {
	key, err := seal.NewKey(clusterKey)
	if err != nil {
		return identity{}, fmt.Errorf("cluster key %s: %w", cfg.ClusterKey, err)
	}
	v := vault{st: st, key: key, file: cfg.ClusterKey}
	id := identity{key: key}
	// A new session secret, not the cluster key's bytes as before: the key file alone must not
	// sign sessions either. A server from before this one therefore ends its agents' sessions
	// once, at its first start after the upgrade; agents open new ones by themselves.
	id.secret, _, err = v.take(ctx, secretSession, func() ([]byte, error) {
		b := make([]byte, 32)
		rand.Read(b)
		return b, nil
	})
	if err != nil {
		return identity{}, err
	}
	if len(id.secret) < 32 {
		return identity{}, fmt.Errorf("the session secret in the database has %d bytes, fewer than 32", len(id.secret))
	}
	var ca *pki.CA
	if !cfg.InsecureHTTP && cfg.TLSCert == "" {
		c, err := v.ca(ctx, filepath.Join(cfg.DataDir, "tls"), cfg.Logger)
		if err != nil {
			return identity{}, err
		}
		ca = &c
	}
	id.tls, id.pin, id.caFile, err = serverTLS(cfg, ca)
	return id, err
}

// vault puts and takes the cluster's secrets, sealed under its cluster key (from file).
type vault struct {
	st   store.Store
	key  *seal.Key
	file string
}

// take returns the secret called name: the one in the store, or the one propose makes when the
// store holds none, in which case ours reports true.
func (v vault) take(ctx context.Context, name string, propose func() ([]byte, error)) (secret []byte, ours bool, err error) {
	p, err := propose()
	if err != nil {
		return nil, false, err
	}
	sealed := v.key.Seal(name, p)
	stored, err := v.st.PutSecret(ctx, name, sealed)
	if err != nil {
		return nil, false, fmt.Errorf("keep the cluster's %s secret in the database: %w", name, err)
	}
	secret, err = v.key.Open(name, stored)
	switch {
	case errors.Is(err, seal.ErrOpen):
		return nil, false, &otherClusterKeyError{file: v.file}
	case err != nil:
		return nil, false, fmt.Errorf("the %s secret in the database: %w", name, err)
	}
	return secret, bytes.Equal(stored, sealed), nil
}

// ca returns the cluster's CA. The first replica puts the CA that dir holds from before there
// were replicas, so that an upgraded server keeps its pin and its agents, or else a new one.
func (v vault) ca(ctx context.Context, dir string, log *slog.Logger) (pki.CA, error) {
	own, ownErr := pki.LoadCA(dir)
	b, ours, err := v.take(ctx, secretCA, func() ([]byte, error) {
		if ownErr == nil {
			return own.MarshalPEM()
		}
		// Clients check certificates against their wall clocks, so they are made by the wall
		// clock too, not the server's injected one.
		ca, err := pki.NewCA(time.Now())
		if err != nil {
			return nil, err
		}
		return ca.MarshalPEM()
	})
	if err != nil {
		return pki.CA{}, err
	}
	ca, err := pki.ParseCA(b)
	if err != nil {
		return pki.CA{}, fmt.Errorf("the CA in the database: %w", err)
	}
	switch {
	case ownErr == nil && ours:
		log.Info("the CA in this server's data directory is now the cluster's: sealed in the database, every replica serves with it", "dir", dir, "pin", ca.Pin())
	case ownErr == nil && own.Pin() != ca.Pin():
		log.Warn("the data directory held a CA of its own, which the cluster's replaces: agents enrolled with this server before it joined the cluster must enroll again", "dir", dir, "pin", ca.Pin())
	case ours && !errors.Is(ownErr, os.ErrNotExist):
		log.Warn("the CA in the data directory does not load, so the cluster has a new one: agents enrolled with the old one must enroll again", "dir", dir, "err", ownErr, "pin", ca.Pin())
	}
	return ca, nil
}

// otherClusterKeyError is a cluster key that does not open the database's secrets.
type otherClusterKeyError struct{ file string }

func (e *otherClusterKeyError) Error() string {
	return fmt.Sprintf("cluster key %s does not open the secrets in the database (another cluster key sealed them): copy the first replica's cluster key to %s", e.file, e.file)
}
