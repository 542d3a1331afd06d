package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/internal/durable"
)

type samplesOptions struct {
	out   string
	bytes int64
}

// samplesMark is the file that marks a directory as samples' output and
// lists the files it wrote, so that a second run replaces exactly those
// and refuses anything else (a file of the user's is never kept as a
// sample, nor overwritten).
const samplesMark = ".estkit-samples.json"

// samplesTop are the folders corpusgen.WriteSamples writes into.
var samplesTop = []string{"openwebtext", "slimpajama", "starcoderdata", "owt-parquet"}

type samplesManifest struct {
	Format string   `json:"format"` // "estkit.samples"
	Files  []string `json:"files"`  // slash-separated, relative to the directory; empty while a run is in progress
}

func newSamplesCmd(g *globals) *cobra.Command {
	opts := &samplesOptions{}
	cmd := &cobra.Command{
		Use:   "samples --out DIR",
		Short: "Write small sample corpora in every supported format, built from the Go toolchain's sources",
		Long: `samples writes small corpora laid out as OpenWebText, SlimPajama, StarCoderData
and OpenWebText-parquet are released, from the text of the Go toolchain's own
sources and docs (GOROOT), so that every command can be tried with no download.

--out must be a new or empty directory, or one an earlier samples run wrote
(marked by ` + samplesMark + `), holding nothing else.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPositive("samples", "bytes", opts.bytes); err != nil {
				return err
			}
			if err := prepareSamplesDir(opts.out); err != nil {
				return err
			}
			dirs, err := corpusgen.WriteSamples(opts.out, opts.bytes)
			if err != nil {
				return err
			}
			if err := markSamplesDir(opts.out); err != nil {
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
	cmd.Flags().StringVarP(&opts.out, "out", "o", "", "output directory: new, empty, or an earlier samples output (required)")
	cmd.Flags().Int64Var(&opts.bytes, "bytes", 8<<20, "text bytes to draw from GOROOT")
	cmd.MarkFlagRequired("out")
	return cmd
}

// samplesFiles lists the files under dir (slash-separated, relative),
// without the mark.
func samplesFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err == nil && rel != samplesMark {
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	return files, err
}

// prepareSamplesDir checks that dir is missing, empty, or an earlier
// samples output holding only the files it wrote, removes those (so that
// none is kept unrewritten), and marks the directory as in progress.
func prepareSamplesDir(dir string) error {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("samples: --out %s is a file, not a directory", dir)
	}
	files, err := samplesFiles(dir)
	if errors.Is(err, fs.ErrNotExist) {
		files, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("samples: --out %w", err)
	}
	if len(files) > 0 {
		b, err := os.ReadFile(filepath.Join(dir, samplesMark))
		var m samplesManifest
		if err != nil || json.Unmarshal(b, &m) != nil || m.Format != "estkit.samples" {
			return fmt.Errorf("samples: --out %s holds %s (and %d files in all), not an earlier samples output: give a new or empty directory", dir, files[0], len(files))
		}
		for _, f := range files {
			// a run killed before it recorded its files (Files is nil)
			// wrote only under the corpora's folders, made by that run
			top, _, _ := strings.Cut(f, "/")
			if m.Files == nil && slices.Contains(samplesTop, top) {
				continue
			}
			if !slices.Contains(m.Files, f) {
				return fmt.Errorf("samples: --out %s holds %s, which samples did not write: move it away or give another directory", dir, f)
			}
		}
		for _, f := range files {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
				return fmt.Errorf("samples: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	return writeSamplesMark(dir, nil)
}

// markSamplesDir records the files the run wrote.
func markSamplesDir(dir string) error {
	files, err := samplesFiles(dir)
	if err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	return writeSamplesMark(dir, files)
}

func writeSamplesMark(dir string, files []string) error {
	b, err := json.MarshalIndent(samplesManifest{Format: "estkit.samples", Files: files}, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(dir, samplesMark, append(b, '\n')); err != nil {
		return fmt.Errorf("samples: %s: %w", strings.TrimSuffix(dir, "/"), err)
	}
	return nil
}
