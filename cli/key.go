package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"github.com/spf13/cobra"
	"golang.org/x/term"
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
	var noPassword bool
	gen := &cobra.Command{
		Use:   "gen [--dir DIR] [--no-password]",
		Short: "Make a signing key pair (ferry.key, mode 0600, encrypted with a password; and ferry.pub)",
		Long: "Make a signing key pair: ferry.key, the secret key (mode 0600), and ferry.pub, the public key, in minisign's formats.\n" +
			"The secret key is encrypted, as minisign does, with the password in $FERRY_KEY_PASSWORD, else one asked for twice on the terminal;\n" +
			"--no-password stores it unencrypted (like minisign -G -W). Without a terminal, set FERRY_KEY_PASSWORD or pass --no-password.",
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = e.keyDir()
			}
			encrypted := false
			pub, err := signing.GenerateKeyPairFunc(dir, func() (string, error) {
				pw, err := e.newKeyPassword(cmd.Context(), noPassword)
				encrypted = pw != ""
				return pw, err
			})
			if err != nil {
				return err
			}
			how := "unencrypted"
			if encrypted {
				how = "encrypted"
			}
			fmt.Fprintf(e.stdout, "wrote %s (%s) and %s\npublic key: %s\n", filepath.Join(dir, signing.SecretKeyFile), how, filepath.Join(dir, signing.PublicKeyFile), pub.String())
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for the key pair (default $FERRY_KEY_DIR or ~/.config/ferry)")
	gen.Flags().BoolVar(&noPassword, "no-password", false, "store the secret key unencrypted (FERRY_KEY_PASSWORD is then ignored)")
	var comment string
	trust := &cobra.Command{
		Use:   "trust PUBKEY-FILE|PUBKEY [--comment TEXT]",
		Short: "Make the server trust a minisign public key for release signatures",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			text, err := PublicKeyArg("key trust", a[0])
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
			e.printf("key %s trusted\n", k.ID)
			return nil
		},
	}
	trust.Flags().StringVar(&comment, "comment", "", "who holds the key")
	list := listVerb(e, "list", "List trusted keys, revoked ones included", noArgs,
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
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := c.RevokeKey(cmd.Context(), a[0]); err != nil {
				return err
			}
			e.printf("key %s revoked\n", a[0])
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
		Args:  Args(cobra.ExactArgs(1)),
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
			priv, err := signing.LoadSecretKeyFunc(keyFile, func() (string, error) { return e.keyPassword(cmd.Context(), keyFile) })
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

// newKeyPassword is the password for a new secret key: none with --no-password, else
// $FERRY_KEY_PASSWORD, else one typed twice on the terminal.
func (e *env) newKeyPassword(ctx context.Context, noPassword bool) (string, error) {
	if noPassword {
		return "", nil
	}
	if pw := e.getenv("FERRY_KEY_PASSWORD"); pw != "" {
		return pw, nil
	}
	if !stdinIsTerminal() {
		return "", Usagef("key gen: no password to encrypt the key with: set FERRY_KEY_PASSWORD, or pass --no-password for an unencrypted key")
	}
	pw, err := e.askPassword(ctx, "Password for the new key: ")
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", Usagef("key gen: empty password: type one, or pass --no-password for an unencrypted key")
	}
	again, err := e.askPassword(ctx, "The same password again: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("key gen: the passwords differ; no key written")
	}
	return pw, nil
}

// keyPassword is the password of the encrypted secret key in file: $FERRY_KEY_PASSWORD, else
// one typed on the terminal.
func (e *env) keyPassword(ctx context.Context, file string) (string, error) {
	if pw := e.getenv("FERRY_KEY_PASSWORD"); pw != "" {
		return pw, nil
	}
	if !stdinIsTerminal() {
		return "", Usagef("secret key %s is encrypted: set FERRY_KEY_PASSWORD (stdin is not a terminal to ask for it)", file)
	}
	return e.askPassword(ctx, "Password for "+file+": ")
}

// stdinIsTerminal reports whether ferry may ask for a password on stdin.
func stdinIsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// askPassword prompts on stderr and reads a line from the terminal on stdin without echoing it.
// Ctrl-C (which cancels ctx) gives up at once, putting the terminal back as it was.
func (e *env) askPassword(ctx context.Context, prompt string) (string, error) {
	fd := int(os.Stdin.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	fmt.Fprint(e.stderr, prompt)
	type line struct {
		b   []byte
		err error
	}
	c := make(chan line, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		c <- line{b, err}
	}()
	select {
	case l := <-c:
		fmt.Fprintln(e.stderr)
		if l.err != nil {
			return "", fmt.Errorf("read password: %w", l.err)
		}
		return string(l.b), nil
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(e.stderr)
		return "", errors.New("interrupted")
	}
}

// PublicKeyArg reads a minisign public key given as a .pub file or as the key itself.
func PublicKeyArg(verb, arg string) (string, error) {
	text := arg
	if b, err := os.ReadFile(arg); err == nil {
		text = string(b)
	}
	if _, err := signing.ParsePublicKey(text); err != nil {
		return "", UsageError{fmt.Errorf("%s: %s is neither a public key file nor a public key: %v", verb, arg, err)}
	}
	return text, nil
}
