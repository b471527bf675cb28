package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"github.com/spf13/cobra"
)

// keyDir is where ferry keeps the signing key pair: $FERRY_KEY_DIR, else ~/.config/ferry.
func (e *env) keyDir() string {
	if d := e.getenv("FERRY_KEY_DIR"); d != "" {
		return d
	}
	home, err := os.UserConfigDir()
	if err != nil {
		return "."
	}
	return filepath.Join(home, "ferry")
}

func (e *env) keyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Make signing keys, and manage the keys the server trusts"}
	var dir string
	gen := &cobra.Command{
		Use:   "gen [--dir DIR]",
		Short: "Make a signing key pair (ferry.key, mode 0600, and ferry.pub); encrypted when FERRY_KEY_PASSWORD is set",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = e.keyDir()
			}
			pub, err := signing.GenerateKeyPair(dir, e.getenv("FERRY_KEY_PASSWORD"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s and %s\npublic key: %s\n", filepath.Join(dir, signing.SecretKeyFile), filepath.Join(dir, signing.PublicKeyFile), pub.String())
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for the key pair (default $FERRY_KEY_DIR or ~/.config/ferry)")
	var comment string
	trust := &cobra.Command{
		Use:   "trust PUBKEY-FILE|PUBKEY [--comment TEXT]",
		Short: "Make the server trust a minisign public key for release signatures",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			text, err := publicKeyArg("key trust", a[0])
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			k, err := c.TrustKey(cmd.Context(), api.KeyTrust{PublicKey: text, Comment: comment})
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(k)
			}
			fmt.Fprintf(e.stdout, "key %s trusted\n", k.ID)
			return nil
		},
	}
	trust.Flags().StringVar(&comment, "comment", "", "who holds the key")
	list := listVerb(e, "list", "List trusted keys, revoked ones included", cobra.NoArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]api.SigningKey, error) { return c.Keys(ctx) },
		[]string{"ID", "STATE", "PUBLIC KEY", "COMMENT"},
		func(k api.SigningKey) []string {
			state := "trusted"
			if k.RevokedAt != nil {
				state = "revoked " + k.RevokedAt.Format(time.RFC3339)
			}
			return []string{k.ID, state, k.PublicKey, dash(k.Comment)}
		})
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Stop trusting a key at once; it cannot be trusted again",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RevokeKey(cmd.Context(), a[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "key %s revoked\n", a[0])
			return nil
		},
	}
	cmd.AddCommand(gen, trust, list, revoke)
	return cmd
}

func (e *env) releaseSignCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "sign FILE [--key SECRET-KEY]",
		Short: "Sign a bundle with a minisign key; writes FILE.minisig",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if keyFile == "" {
				keyFile = filepath.Join(e.keyDir(), signing.SecretKeyFile)
			}
			f, err := os.Open(a[0])
			if err != nil {
				return err
			}
			m, err := release.Read(f, release.Limits{})
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", a[0], err)
			}
			priv, err := signing.LoadSecretKey(keyFile, e.getenv("FERRY_KEY_PASSWORD"))
			if err != nil {
				return err
			}
			out, err := signing.SignFile(priv, a[0], fmt.Sprintf("ferry bundle %s@%s", m.App, m.Version))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "secret key file (default: ferry.key in $FERRY_KEY_DIR or ~/.config/ferry)")
	return cmd
}

// publicKeyArg reads a minisign public key given as a .pub file or as the key itself.
func publicKeyArg(verb, arg string) (string, error) {
	text := arg
	if b, err := os.ReadFile(arg); err == nil {
		text = string(b)
	}
	if _, err := signing.ParsePublicKey(text); err != nil {
		return "", UsageError{fmt.Errorf("%s: %s is neither a public key file nor a public key: %v", verb, arg, err)}
	}
	return text, nil
}
