package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// identity is what makes a node itself across restarts: its key pair (the private half never
// leaves the data dir) and the name and server it enrolled with.
type identity struct {
	Node      string `json:"node"`
	Site      string `json:"site"`
	Server    string `json:"server"`
	PublicKey string `json:"public_key"`
	// CAPin is the pin of the server's CA the enrollment token carried; the agent refuses a
	// server whose chain does not hold that CA.
	CAPin      string    `json:"ca_pin,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

const (
	keyFile      = "node.key"
	identityFile = "identity.json"
	desiredFile  = "desired.json"
)

// loadOrCreateKey reads the node's private key, making one on first start.
func loadOrCreateKey(dir string) (ed25519.PrivateKey, error) {
	file := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(file)
	if err == nil {
		seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("%s is not a Ferry node key; move it away to enroll afresh", file)
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(file, []byte(base64.StdEncoding.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		return nil, err
	}
	return priv, nil
}

func loadIdentity(dir string) (*identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, identityFile), err)
	}
	return &id, nil
}

func saveJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(file, append(b, '\n'), 0o600)
}

// writeFileAtomic writes via a synced temporary file and a rename, so a crash leaves the old
// file or the new one, never half of either.
func writeFileAtomic(file string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
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
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	syncDir(filepath.Dir(file))
	return nil
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
