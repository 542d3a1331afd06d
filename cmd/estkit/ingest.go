package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/setdir"
)

type ingestOptions struct {
	format, onError, utf8, compression, part string
	o                                        ingest.Options
}

func newIngestCmd(g *globals) *cobra.Command {
	opts := &ingestOptions{}
	formats := make([]string, len(ingest.Formats))
	for i, f := range ingest.Formats {
		formats[i] = string(f)
	}
	cmd := &cobra.Command{
		Use:   "ingest --out DIR INPUT...",
		Short: "Read raw corpora into document shards (Arrow IPC) with lineage and a manifest",
		Long: `ingest reads raw corpora in the formats they are downloaded in and writes
document shards: Arrow IPC files with one row per document (its text and its
lineage: corpus, input file and its sha256, position, content hash, source
metadata) and a manifest.json with counts of documents read, kept, filtered
and rejected by reason.

Formats (--format, default auto: recognised per file from names and contents):
  owt          OpenWebText: urlsf_subsetNN-M_data.xz files, or the outer tar
  owt-parquet  OpenWebText on Hugging Face: train-*.parquet, column text
  slimpajama   SlimPajama-627B *.jsonl.zst (--include-set / --exclude-set)
  starcoder    StarCoderData parquet, language = parent directory (--lang)
  jsonl        JSON lines, plain, .zst or .gz (--text-field)
  parquet      parquet (--text-column)
  text         a directory of .txt files, one document each
  arrow        Arrow IPC streams and files (the datasets library's cache and
               save_to_disk .arrow files, .feather) (--text-column)

A Hugging Face hub cache folder (datasets--OWNER--NAME, as huggingface_hub
and the datasets library download into ~/.cache/huggingface/hub) is read
through one snapshot, each file once, and its commit recorded in every
document's lineage; dataset metadata files (README.md, dataset_info.json,
state.json, ...) are passed by and listed in the manifest's ignored files.

Running the same command again does no work when the inputs and options are
unchanged; an interrupted run leaves the previous output intact and is
completed by running it again.`,
		Example: `  estkit ingest --out data/owt openwebtext/
  estkit ingest --format slimpajama --exclude-set RedPajamaGithub --out data/slim SlimPajama-627B/train
  estkit ingest --format starcoder --lang python --lang go --out data/code starcoderdata/
  estkit ingest --out data/wiki ~/.cache/huggingface/hub/datasets--wikimedia--wikipedia
  estkit ingest --part 2/8 --out s3://corpus/slim.part2 SlimPajama-627B/train   # then estkit merge`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runIngest(cmd, g, opts, args) },
	}
	f := cmd.Flags()
	f.StringVar(&opts.format, "format", "auto", "input format: "+strings.Join(formats, ", "))
	f.StringVarP(&opts.o.OutDir, "out", "o", "", "output directory (required)")
	f.StringVar(&opts.o.Corpus, "corpus", "", "corpus name recorded for every document (default: from the format)")
	f.StringVar(&opts.o.TextField, "text-field", "", `jsonl: dotted path of the text field (default "text")`)
	f.StringVar(&opts.o.TextColumn, "text-column", "", `parquet, arrow: text column (default "text"; starcoder "content")`)
	f.StringSliceVar(&opts.o.MetaFields, "meta-field", nil, "jsonl/parquet/arrow: field copied into the lineage metadata (repeatable)")
	f.StringSliceVar(&opts.o.IncludeSets, "include-set", nil, "slimpajama: keep only this redpajama_set_name (repeatable)")
	f.StringSliceVar(&opts.o.ExcludeSets, "exclude-set", nil, "slimpajama: drop this redpajama_set_name (repeatable), e.g. RedPajamaGithub")
	f.StringSliceVar(&opts.o.Langs, "lang", nil, "starcoder: keep only this language directory (repeatable)")
	f.StringVar(&opts.o.Revision, "revision", "", "Hugging Face hub cache: the ref (main, a tag, pr/N) or commit to read (default: refs/main, or the only snapshot)")
	f.BoolVar(&opts.o.Dedup, "dedup", false, "drop exact duplicate documents by content hash, keeping the first")
	f.StringVar(&opts.onError, "on-error", "fail", "on bad input: fail (stop at the first error) or skip (count it as rejected and go on)")
	f.StringVar(&opts.utf8, "utf8", "reject", "invalid UTF-8 in text: reject (a bad-input error) or repair (U+FFFD, counted)")
	f.Int64Var(&opts.o.MaxDocBytes, "max-doc-bytes", ingest.DefaultMaxDocBytes, "largest document accepted, in bytes of text (a JSON line may be at most twice that plus 1 MiB)")
	f.Int64Var(&opts.o.ShardBytes, "shard-bytes", ingest.DefaultShardBytes, "text bytes per output shard")
	f.StringVar(&opts.compression, "compression", "zstd", "shard body compression: zstd, lz4 or none")
	f.IntVarP(&opts.o.Workers, "workers", "j", 0, "parallel workers (default: number of CPUs); output does not depend on it")
	f.BoolVar(&opts.o.Force, "force", false, "redo the work even when the output is up to date")
	f.StringVar(&opts.part, "part", "", "i/N: ingest only part i (from 0) of N of the input files, a contiguous share by bytes, into a partial set; estkit merge joins the N (docs/SCALING.md)")
	cmd.MarkFlagRequired("out")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("on-error", cobra.FixedCompletions([]string{"fail", "skip"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("utf8", cobra.FixedCompletions([]string{"reject", "repair"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("compression", cobra.FixedCompletions([]string{"zstd", "lz4", "none"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runIngest(cmd *cobra.Command, g *globals, opts *ingestOptions, args []string) error {
	o := opts.o
	// the library reads 0 as its default; typed, 0 is a mistake
	if err := checkPositive("ingest", "max-doc-bytes", o.MaxDocBytes); err != nil {
		return err
	}
	if err := checkPositive("ingest", "shard-bytes", o.ShardBytes); err != nil {
		return err
	}
	if err := checkWorkers("ingest", o.Workers); err != nil {
		return err
	}
	if err := checkOutLink("ingest", o.OutDir); err != nil {
		return err
	}
	format, err := ingest.ParseFormat(opts.format)
	if err != nil {
		return &usageError{err}
	}
	o.Format = format
	if opts.part != "" {
		if o.Part, err = setdir.ParsePart(opts.part); err != nil {
			return usageErrorf("ingest: --part: %w", err)
		}
	}
	o.OnError = ingest.OnError(opts.onError)
	o.UTF8 = ingest.UTF8Policy(opts.utf8)
	o.Compression = ingest.Compression(opts.compression)
	o.Logger = g.log
	o.Version = buildVersion()
	p := g.prog
	o.Progress = func(pr ingest.Progress) {
		items := pr.Documents
		if pr.Phase == "hash" {
			items = -1
		}
		p.update(pr.Phase, pr.Bytes, pr.TotalBytes, items, "docs")
	}
	res, err := ingest.Run(cmd.Context(), args, o)
	p.finish()
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, summarize(res.Manifest, res.UpToDate))
	}
	if res.UpToDate {
		fmt.Fprintf(g.stdout, "%s is up to date (same inputs and options); nothing to do.\n", o.OutDir)
	}
	return printSummary(g.stdout, o.OutDir, res.Manifest)
}
