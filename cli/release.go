package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferryhq/ferry/release"
	"github.com/spf13/cobra"
)

func (e *env) releaseCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "release", Short: "Build and sign release bundles"}
	build := &cobra.Command{
		Use:   "build DIR -o FILE",
		Short: "Bundle DIR (with ferry.yaml at its root) into a reproducible tar.gz",
		Args:  args(cobra.ExactArgs(1)),
		// Here -o names the bundle file (PRODUCT.md's contract), not the output format.
		Annotations: map[string]string{outputIsFile: "true"},
		RunE: func(cmd *cobra.Command, a []string) error {
			out := e.output
			if !cmd.Flags().Changed("output") {
				return usagef("release build: -o FILE is required")
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
			fmt.Fprintf(e.stdout, "%s@%s → %s (sha256:%s)\n", m.App, m.Version, out, sum)
			return nil
		},
	}
	cmd.AddCommand(build, e.releaseSignCmd())
	return cmd
}
