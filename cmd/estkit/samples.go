package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest/corpusgen"
)

type samplesOptions struct {
	out   string
	bytes int64
}

func newSamplesCmd(g *globals) *cobra.Command {
	opts := &samplesOptions{}
	cmd := &cobra.Command{
		Use:   "samples --out DIR",
		Short: "Write small sample corpora in every supported format, built from the Go toolchain's sources",
		Long: `samples writes small corpora laid out as OpenWebText, SlimPajama, StarCoderData
and OpenWebText-parquet are released, from the text of the Go toolchain's own
sources and docs (GOROOT), so that every command can be tried with no download.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dirs, err := corpusgen.WriteSamples(opts.out, opts.bytes)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(dirs))
			for n := range dirs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(g.stdout, "%-12s %s\n", n, dirs[n])
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&opts.out, "out", "o", "", "output directory (required)")
	cmd.Flags().Int64Var(&opts.bytes, "bytes", 8<<20, "text bytes to draw from GOROOT")
	cmd.MarkFlagRequired("out")
	return cmd
}
