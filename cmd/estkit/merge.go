package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/shards"
)

type mergeOptions struct {
	force bool
}

func newMergeCmd(g *globals) *cobra.Command {
	opts := &mergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge OUT PART...",
		Short: "Join the partial sets of an ingest or shard run split with --part i/N into one set",
		Long: `merge joins the N partial sets that "estkit ingest --part i/N" or "estkit shard
--part i/N" wrote (all of them, in any order; directories or s3:// URLs) into
OUT: the set one machine makes from the same inputs with the same options,
byte for byte (shards, lineage, counts, key), but for the manifest's timing.
The parts must come from one command line that differs only in --part and
--out; merge refuses a missing or repeated part, or parts of other inputs or
options. docs/SCALING.md shows a Slurm array and a Kubernetes indexed Job.`,
		Example: `  estkit merge data/slim data/slim.part0 data/slim.part1 data/slim.part2
  estkit merge s3://corpus/tok s3://corpus/tok.part{0..7}`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error { return runMerge(cmd, g, opts, args) },
	}
	cmd.Flags().BoolVar(&opts.force, "force", false, "document sets: redo the work even when OUT is up to date")
	return cmd
}

func runMerge(cmd *cobra.Command, g *globals, opts *mergeOptions, args []string) error {
	out, parts := args[0], args[1:]
	if err := checkMergeOut(out, parts); err != nil {
		return err
	}
	d, err := store.Open(cmd.Context(), parts[0])
	if err != nil {
		return err
	}
	schema, err := setdir.SchemaOf(d)
	if err != nil {
		return fmt.Errorf("merge: %s: not a set estkit wrote (no readable manifest): %w", parts[0], err)
	}
	switch schema {
	case ingest.ManifestSchema:
		res, err := ingest.Merge(cmd.Context(), parts, ingest.Options{OutDir: out, Version: buildVersion(), Logger: g.log, Force: opts.force})
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, summarize(res.Manifest, res.UpToDate))
		}
		return printSummary(g.stdout, out, res.Manifest)
	case shards.ManifestSchema:
		res, err := shards.Merge(cmd.Context(), parts, shards.MergeOptions{OutDir: out, Version: buildVersion(), Logger: g.log})
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, map[string]any{"dir": res.Dir, "reused": res.Reused, "manifest": res.Manifest})
		}
		return printTokenSummary(g.stdout, res.Dir, res.Manifest)
	}
	return fmt.Errorf("merge: %s: a set of schema %q, neither document nor token shards", parts[0], schema)
}

// checkMergeOut refuses an output that is one of the parts (the part
// would be replaced by the whole set before the others are read, however
// the path is spelt) and one inside a training run.
func checkMergeOut(out string, parts []string) error {
	if !store.IsURL(out) {
		if err := checkOutLink("merge", out); err != nil {
			return err
		}
	}
	same := func(loc string) string {
		if store.IsURL(loc) {
			return strings.TrimRight(loc, "/")
		}
		abs, err := filepath.Abs(loc)
		if err != nil {
			return loc
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			return real
		}
		return abs
	}
	o := same(out)
	for _, p := range parts {
		if same(p) == o {
			return usageErrorf("merge: the output %s is also a part (%s): give a new directory for the merged set", out, p)
		}
	}
	return nil
}
