package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	"github.com/mattn/go-isatty"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferryhq/ferry/api"
	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/release"
	"github.com/ferryhq/ferry/signing"
	"github.com/spf13/cobra"
)

func (e *env) releaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "release", Short: "Build, sign, push and inspect release bundles"}
	build := &cobra.Command{
		Use:   "build DIR -o FILE",
		Short: "Bundle DIR (with ferry.yaml at its root) into a reproducible tar.gz",
		Args:  Args(cobra.ExactArgs(1)),
		// Here -o names the bundle file (PRODUCT.md's contract), not the output format.
		Annotations: map[string]string{outputIsFile: "true"},
		RunE: func(cmd *cobra.Command, a []string) error {
			out := e.output
			if !cmd.Flags().Changed("output") {
				return Usagef("release build: -o FILE is required")
			}
			// Write beside the target and rename, so a failed build leaves no partial bundle.
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			m, sum, err := release.Build(a[0], tmp)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			e.printf("%s@%s → %s (sha256:%s)\n", m.App, m.Version, out, sum)
			return nil
		},
	}
	cmd.AddCommand(build, e.releaseSignCmd(), e.releasePushCmd(), e.releaseListCmd(), e.releaseShowCmd())
	cmd.AddCommand(e.releaseLifecycleCmds()...)
	return cmd
}

func (e *env) releasePushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "push FILE",
		Short: "Upload a bundle (with FILE.minisig when present); it lands in the first channel",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			f, err := os.Open(a[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			sig, err := os.ReadFile(a[0] + ".minisig")
			if errors.Is(err, os.ErrNotExist) {
				sig = nil
			} else if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if sig != nil {
				if err := checkSignature(cmd.Context(), c, f, sig); err != nil {
					return fmt.Errorf("%s: %w", a[0], err)
				}
			}
			var body io.Reader = f
			var bar *mpb.Progress
			if out, ok := e.stderr.(*os.File); ok && isatty.IsTerminal(out.Fd()) {
				bar = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40))
				b := bar.AddBar(fi.Size(), mpb.PrependDecorators(decor.Name(filepath.Base(a[0])+" ")),
					mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
				if pr, err := b.ProxyReader(f); err == nil {
					body = pr
				}
				defer func() { b.Abort(false); bar.Wait() }()
			}
			rel, created, err := c.Push(cmd.Context(), body, fi.Size(), sig)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(rel)
			}
			signed := "unsigned"
			if rel.SignedBy != "" {
				signed = "signed by " + rel.SignedBy
			}
			if !created {
				e.printf("%s@%s is already in the catalog with these bytes (sha256:%s, %s), in %s; nothing changed\n",
					rel.App, rel.Version, rel.SHA256, signed, dash(strings.Join(rel.Channels, ", ")))
				return nil
			}
			e.printf("%s@%s pushed (sha256:%s, %s) to %s\n", rel.App, rel.Version, rel.SHA256, signed, strings.Join(rel.Channels, ", "))
			return nil
		},
	}
}

func (e *env) releaseListCmd() *cobra.Command {
	return listVerb(e, "list [APP]", "List releases", cobra.MaximumNArgs(1),
		func(ctx context.Context, c *client.Client, a []string) ([]api.Release, error) {
			app := ""
			if len(a) == 1 {
				app = a[0]
			}
			return c.Releases(ctx, app)
		},
		[]string{"APP", "VERSION", "CLASS", "CHANNELS", "SIGNED BY", "SHA256", "SIZE"},
		func(r api.Release) []string {
			channels := dash(strings.Join(r.Channels, ","))
			if r.Withdrawn != "" {
				channels = "withdrawn" // in no channel, and why is in release show
			}
			return []string{r.App, r.Version, r.Class, channels, dash(r.SignedBy), r.SHA256[:12], bytes(uint64(r.Size))}
		})
}

func (e *env) releaseShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show APP@VERSION",
		Short: "Show one release with its manifest",
		Args:  Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app, ver, ok := strings.Cut(a[0], "@")
			if !ok || app == "" || ver == "" {
				return Usagef("release show: want APP@VERSION, got %q", a[0])
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			r, err := c.Release(cmd.Context(), app, ver)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(r)
			}
			return e.table([]string{"FIELD", "VALUE"}, [][]string{
				{"release", r.App + "@" + r.Version}, {"class", r.Class}, {"sha256", r.SHA256}, {"size", bytes(uint64(r.Size))},
				{"signed by", dash(r.SignedBy)}, {"channels", dash(strings.Join(r.Channels, ", "))}, {"withdrawn", dash(r.Withdrawn)},
				{"pushed", r.CreatedAt.Format("2006-01-02T15:04:05Z07:00")},
			})
		},
	}
}

// checkSignature verifies a bundle's signature against the keys the server trusts before the
// bundle is sent, so that a signature the server would refuse costs no upload, and says why:
// made by a key it does not trust, or by a trusted key but of other bytes. When the keys cannot
// be read, the server alone judges. It leaves f at its start.
func checkSignature(ctx context.Context, c *client.Client, f *os.File, sig []byte) error {
	keys, err := c.Keys(ctx)
	if err != nil {
		return nil
	}
	var trusted []minisign.PublicKey
	for _, k := range keys {
		if pub, err := signing.ParsePublicKey(k.PublicKey); err == nil && k.RevokedAt == nil {
			trusted = append(trusted, pub)
		}
	}
	_, err = signing.Verify(f, sig, trusted)
	switch {
	case errors.Is(err, signing.ErrUntrustedKey):
		return fmt.Errorf("%w; trust its public key with ferry key trust, or sign with a trusted key", err)
	case errors.Is(err, signing.ErrMismatch):
		return fmt.Errorf("%w; sign the bundle again with ferry release sign", err)
	case err != nil:
		return err
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
