package main

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
)

type shardOptions struct {
	tokenizer, part string
	o               shards.Options
}

func newShardCmd(g *globals) *cobra.Command {
	opts := &shardOptions{}
	cmd := &cobra.Command{
		Use:   "shard --tokenizer gpt2|PATH [--out DIR] DOCDIR...",
		Short: "Tokenize document shards into token shards (Arrow IPC) that many training runs reuse",
		Long: `shard tokenizes the document shards that estkit ingest wrote into token
shards: Arrow IPC files with, per document, its token ids (uint16 when the
vocabulary fits) and its document-shard file and row, so that lineage reaches
the source. A deterministic fraction of the documents (by a hash of their
text) forms the val split.

Separators: by default GPT-2 appends <|endoftext|> after each document and a
tokenizer with a BOS (Llama 2) prepends it; --bos and --eos choose. The
manifest records what was used.

Sets are content-addressed: the key hashes the inputs, the options and the
tokenizer. Without --out the set lives at its key under --cache, and running
the same command again does no work and prints the same directory; a
different tokenizer or option never reuses a set.`,
		Example: `  estkit shard --tokenizer gpt2 data/owt
  estkit shard --tokenizer llama/tokenizer.model --out tok/slim data/slim data/code
  estkit shard --tokenizer TinyLlama/tokenizer.json --eos --val-fraction 0.001 data/slim
  estkit shard --tokenizer gpt2 --part 0/4 --out s3://corpus/tok.part0 s3://corpus/slim   # then estkit merge`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runShard(cmd, g, opts, args) },
	}
	f := cmd.Flags()
	f.StringVar(&opts.tokenizer, "tokenizer", "gpt2", "tokenizer: gpt2, bytes, or PATH of a tokenizer.json, a tokenizer.model or a directory holding one")
	f.StringVarP(&opts.o.OutDir, "out", "o", "", "output directory (default: the set's key under --cache)")
	f.StringVar(&opts.o.CacheDir, "cache", "", "directory of content-addressed sets (default: "+shards.DefaultCacheDir()+")")
	f.BoolVar(&opts.o.BOS, "bos", false, "prepend the tokenizer's BOS to each document")
	f.BoolVar(&opts.o.EOS, "eos", false, "append the tokenizer's EOS to each document (GPT-2: <|endoftext|>)")
	floatFlag(f, &opts.o.ValFraction, "val-fraction", shards.DefaultValFraction, "fraction of documents in the val split, chosen by a hash of the text")
	f.Uint64Var(&opts.o.ValSeed, "val-seed", shards.DefaultValSeed, "seed of the val split's hash")
	f.StringVar(&opts.o.Compression, "compression", "none", "shard body compression: none (memory-mapped without copying) or zstd (smaller, for storage or transfer)")
	f.Int64Var(&opts.o.ShardTokens, "shard-tokens", shards.DefaultShardTokens, "tokens per output file")
	f.IntVarP(&opts.o.Workers, "workers", "j", 0, "tokenizing goroutines (default: number of CPUs); output does not depend on it")
	f.StringVar(&opts.part, "part", "", "i/N: tokenize only part i (from 0) of N of the document files, a contiguous share by bytes, into a partial set; estkit merge joins the N (docs/SCALING.md)")
	cmd.RegisterFlagCompletionFunc("compression", cobra.FixedCompletions([]string{"none", "zstd"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runShard(cmd *cobra.Command, g *globals, opts *shardOptions, args []string) error {
	o := opts.o
	if err := checkPositive("shard", "shard-tokens", o.ShardTokens); err != nil { // the library reads 0 as its default; typed, it is a mistake
		return err
	}
	if err := checkWorkers("shard", o.Workers); err != nil {
		return err
	}
	if err := checkOutLink("shard", o.OutDir); err != nil {
		return err
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) { // NaN fails both
		return usageErrorf("shard: --val-fraction %g: the val fraction must be in [0, 1)", o.ValFraction)
	}
	tok, err := tokenize.Load(opts.tokenizer)
	if err != nil {
		return err
	}
	if opts.part != "" {
		if o.Part, err = setdir.ParsePart(opts.part); err != nil {
			return usageErrorf("shard: --part: %w", err)
		}
	}
	o.Logger = g.log
	if !cmd.Flags().Changed("bos") && !cmd.Flags().Changed("eos") {
		o.BOS, o.EOS = shards.DefaultSeparators(tok)
	}
	o.Version = buildVersion()
	var total int64
	for _, d := range args {
		if m, err := ingest.ReadManifest(d); err == nil {
			total += m.Counts.TextBytes
		}
	}
	p := g.prog
	o.Progress = func(docs, bytes int64) { p.update("shard", bytes, total, docs, "docs") }
	res, err := shards.Build(cmd.Context(), tok, args, o)
	p.finish()
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"dir": res.Dir, "reused": res.Reused, "manifest": res.Manifest})
	}
	if res.Reused {
		fmt.Fprintf(g.stdout, "%s is up to date (same inputs, options and tokenizer); nothing to do.\n", res.Dir)
	}
	return printTokenSummary(g.stdout, res.Dir, res.Manifest)
}

func printTokenSummary(w io.Writer, dir string, m *shards.Manifest) error {
	t := m.Tokenizer
	sep := ""
	if t.BOS >= 0 {
		sep += fmt.Sprintf(" BOS %d before each document", t.BOS)
	}
	if t.EOS >= 0 {
		sep += fmt.Sprintf(" EOS %d after each document", t.EOS)
	}
	if sep == "" {
		sep = " no separators"
	}
	fmt.Fprintf(w, "%s: token shards, key %s\ntokenizer %s (%d ids, uint%d);%s\n\n", dir, m.Key[:12], t.Fingerprint, t.VocabSize, t.TokenBits, sep)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "split\tcorpus\tdocuments\ttokens\tfiles\t")
	for _, split := range []string{shards.Train, shards.Val} {
		s := m.Splits[split]
		if s == nil {
			continue
		}
		names := make([]string, 0, len(s.Corpora))
		for n := range s.Corpora {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\t\n", split, n, s.Corpora[n].Documents, s.Corpora[n].Tokens)
		}
		fmt.Fprintf(tw, "%s\ttotal\t%d\t%d\t%d\t\n", split, s.Documents, s.Tokens, len(s.Files))
	}
	return tw.Flush()
}
