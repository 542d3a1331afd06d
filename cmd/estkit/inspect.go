package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
)

type inspectOptions struct {
	doc int64
	// token shard sets
	seq       int64
	seqLen    int
	order     string
	seed      uint64
	split     string
	tokens    bool
	format    string
	out       string
	tokenizer string
	verify    bool
}

func newInspectCmd(g *globals) *cobra.Command {
	opts := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Summarise document or token shards; print a document, a training sequence or a token stream",
		Example: `  estkit inspect data/owt
  estkit inspect data/owt --json
  estkit inspect data/owt --doc 17 --json
  estkit inspect tok/owt --seq 5 --seq-len 1024 --seed 1
  estkit inspect tok/owt --tokens --split val --format int32 > val.bin
  # nanoGPT's data/owt/train.bin and val.bin (flat uint16)
  estkit inspect tok/owt --tokens --split train --format nanogpt --out nanoGPT/data/owt/train.bin
  estkit inspect tok/owt --tokens --split val --format nanogpt --out nanoGPT/data/owt/val.bin
  # llm.c's token files (256-int32 header, then uint16)
  estkit inspect tok/owt --tokens --split train --format llmc --out llm.c/dev/data/owt/owt_train_000000.bin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.check(cmd); err != nil {
				return err
			}
			dir := args[0]
			_, terr := shards.ReadManifest(dir)
			if terr == nil {
				if err := opts.checkTokenSet(cmd, dir); err != nil {
					return err
				}
				return inspectTokens(cmd, g, opts, dir)
			}
			m, err := ingest.ReadManifest(dir)
			switch {
			case err == nil:
			case errors.Is(terr, fs.ErrNotExist) && errors.Is(err, fs.ErrNotExist):
				if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) && !store.IsURL(dir) {
					return fmt.Errorf("inspect: %w", serr)
				}
				return fmt.Errorf("inspect: %s holds no manifest.json: it is neither a document set (estkit ingest writes them) nor a token set (estkit shard)", dir)
			case errors.Is(terr, shards.ErrCorrupt) && errors.Is(err, ingest.ErrVersion):
				return terr // a token set's manifest, damaged
			case errors.Is(terr, shards.ErrCorrupt) && errors.Is(err, ingest.ErrCorrupt) && !errors.Is(terr, shards.ErrVersion):
				// neither reader got as far as the schema: the file is not
				// JSON, and which kind of set it was cannot be told
				return fmt.Errorf("inspect: %s: %w: it does not parse as the manifest of a document set or of a token set (%v)", filepath.Join(dir, ingest.ManifestName), ingest.ErrCorrupt, err)
			default:
				return err
			}
			for _, name := range tokenSetFlags {
				if cmd.Flags().Changed(name) {
					return usageErrorf("inspect: --%s applies to token sets; %s is a document set", name, dir)
				}
			}
			if cmd.Flags().Changed("doc") {
				d, err := ingest.ReadDocument(dir, m, opts.doc)
				if err != nil {
					return err
				}
				if g.json {
					return printJSON(g.stdout, map[string]any{"text": d.Text, "lineage": d.Lineage.JSON()})
				}
				lj, _ := json.MarshalIndent(d.Lineage.JSON(), "", "  ")
				fmt.Fprintf(g.stdout, "lineage: %s\n\n%s\n", lj, d.Text)
				return nil
			}
			if g.json {
				return printJSON(g.stdout, summarize(m, false))
			}
			return printSummary(g.stdout, dir, m)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&opts.doc, "doc", 0, "document shards: print document K (0-based, in shard order) with its lineage")
	f.Int64Var(&opts.seq, "seq", 0, "token shards: print training sequence K of --order and --seed, decoded, with its lineage")
	f.IntVar(&opts.seqLen, "seq-len", 1024, "token shards: sequence length T (a sequence holds T+1 tokens)")
	f.StringVar(&opts.order, "order", shards.Shuffle, "token shards: window order, shuffle or sequential")
	f.Uint64Var(&opts.seed, "seed", 0, "token shards: shuffle seed")
	f.StringVar(&opts.split, "split", shards.Train, "token shards: split, train or val")
	f.BoolVar(&opts.tokens, "tokens", false, "token shards: write the split's token stream (to standard output, or --out)")
	f.StringVar(&opts.format, "format", shards.FormatJSONL, "with --tokens: jsonl (one document's ids per line), int32 (raw little-endian stream), nanogpt (raw little-endian uint16, nanoGPT's train.bin/val.bin) or llmc (llm.c's 256-int32 header, then uint16); nanogpt and llmc refuse vocabularies with ids past 65535")
	f.StringVar(&opts.out, "out", "", "with --tokens: write to this file (atomically: complete or not at all; its directory is created) instead of standard output (\"-\")")
	f.StringVar(&opts.tokenizer, "tokenizer", "", "token shards: tokenizer to decode --seq with (default: the set's, when built in: gpt2 or bytes)")
	f.BoolVar(&opts.verify, "verify", false, "token shards: check every file's sha256 against the manifest at this open (the first open after a build, copy or change always does)")
	return cmd
}

// check refuses, as usage errors, flag values that are not among their
// choices and flags that do not go together, before any work.
func (o *inspectOptions) check(cmd *cobra.Command) error {
	if err := checkPositive("inspect", "seq-len", int64(o.seqLen)); err != nil {
		return err
	}
	if o.seq < 0 {
		return usageErrorf("inspect: --seq %d: want 0 or more", o.seq)
	}
	if o.doc < 0 {
		return usageErrorf("inspect: --doc %d: want 0 or more", o.doc)
	}
	if o.split != shards.Train && o.split != shards.Val {
		return usageErrorf("inspect: --split %q: want %s or %s", o.split, shards.Train, shards.Val)
	}
	if !slices.Contains(shards.ExportFormats, o.format) {
		return usageErrorf("inspect: --format %q: want %s", o.format, strings.Join(shards.ExportFormats, ", "))
	}
	if o.order != shards.Shuffle && o.order != shards.Sequential {
		return usageErrorf("inspect: --order %q: want %s or %s", o.order, shards.Shuffle, shards.Sequential)
	}
	if !o.tokens {
		for _, name := range []string{"out", "format"} {
			if cmd.Flags().Changed(name) {
				return usageErrorf("inspect: --%s applies to --tokens only", name)
			}
		}
	}
	if o.tokens && cmd.Flags().Changed("out") && o.out == "" {
		return usageErrorf("inspect: --out: name the file to write")
	}
	return nil
}

// tokenSetFlags are the flags that apply to token sets only.
var tokenSetFlags = []string{"seq", "seq-len", "order", "seed", "split", "tokens", "format", "out", "tokenizer", "verify"}

// checkTokenSet refuses, as usage errors, flags that do not apply to a
// token set or to what was asked of it (rather than ignoring them).
func (o *inspectOptions) checkTokenSet(cmd *cobra.Command, dir string) error {
	f := cmd.Flags()
	if f.Changed("doc") {
		return usageErrorf("inspect: --doc applies to document sets; %s is a token set", dir)
	}
	if f.Changed("seq") && o.tokens {
		return usageErrorf("inspect: give --seq or --tokens, not both")
	}
	if !f.Changed("seq") {
		for _, name := range []string{"seq-len", "order", "seed", "tokenizer"} {
			if f.Changed(name) {
				return usageErrorf("inspect: --%s applies to --seq only", name)
			}
		}
		if f.Changed("split") && !o.tokens {
			return usageErrorf("inspect: --split applies to --seq and --tokens only")
		}
	}
	return nil
}

// summary is the JSON form of a manifest's summary.
type summary struct {
	Documents    int64                     `json:"documents"`
	TextBytes    int64                     `json:"text_bytes"`
	Read         int64                     `json:"read"`
	Filtered     map[string]int64          `json:"filtered"`
	Rejected     map[string]int64          `json:"rejected"`
	UTF8Repaired int64                     `json:"utf8_repaired"`
	Corpora      map[string]*ingest.Counts `json:"corpora"`
	Shards       int                       `json:"shards"`
	Inputs       int                       `json:"inputs"`
	Key          string                    `json:"key"`
	UpToDate     bool                      `json:"up_to_date,omitempty"`
}

func summarize(m *ingest.Manifest, upToDate bool) summary {
	return summary{Documents: m.Counts.Documents, TextBytes: m.Counts.TextBytes, Read: m.Counts.Read,
		Filtered: m.Counts.Filtered, Rejected: m.Counts.Rejected, UTF8Repaired: m.Counts.UTF8Repaired,
		Corpora: m.Corpora, Shards: len(m.Outputs), Inputs: len(m.Inputs), Key: m.Key, UpToDate: upToDate}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSummary(w io.Writer, dir string, m *ingest.Manifest) error {
	fmt.Fprintf(w, "%s: %d input files, %d shards, key %s\n\n", dir, len(m.Inputs), len(m.Outputs), m.Key[:12])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "corpus\tread\tdocuments\ttext MB\tfiltered\trejected\t")
	names := make([]string, 0, len(m.Corpora))
	for n := range m.Corpora {
		names = append(names, n)
	}
	sort.Strings(names)
	row := func(name string, c *ingest.Counts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%s\t%s\t\n", name, c.Read, c.Documents, float64(c.TextBytes)/1e6, reasons(c.Filtered), reasons(c.Rejected))
	}
	for _, n := range names {
		row(n, m.Corpora[n])
	}
	if len(names) > 1 {
		row("total", &m.Counts)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if m.Counts.UTF8Repaired > 0 {
		fmt.Fprintf(w, "\n%d documents had invalid UTF-8 repaired\n", m.Counts.UTF8Repaired)
	}
	if len(m.Rejections) > 0 {
		fmt.Fprintf(w, "\nfirst rejections (of %d; all are listed in %s/manifest.json up to %d):\n", total(m.Counts.Rejected), dir, 1000)
		for i, r := range m.Rejections {
			if i == 5 {
				break
			}
			fmt.Fprintf(w, "  %s\n", r.Error)
		}
	}
	return nil
}

func reasons(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// inspectTokens summarises a token shard set, prints a sequence, or writes
// a split's token stream.
func inspectTokens(cmd *cobra.Command, g *globals, opts *inspectOptions, dir string) error {
	set, err := shards.OpenWith(dir, shards.OpenOptions{Full: opts.verify, Logger: g.log, Context: cmd.Context()})
	if err != nil {
		return err
	}
	defer set.Close()
	m := set.Manifest
	switch {
	case opts.tokens:
		return writeTokens(cmd.Context(), g, set, opts)
	case cmd.Flags().Changed("seq"):
		l, err := shards.NewLoader(shards.Config{Data: []shards.Weighted{{Set: set, Weight: 1}}, Split: opts.split,
			B: 1, T: opts.seqLen, Order: opts.order, Seed: opts.seed}, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		ref, err := l.Sequence(opts.seq)
		if err != nil {
			return err
		}
		ids := make([]int32, opts.seqLen+1)
		if err := l.ReadSequence(ref, ids); err != nil {
			return err
		}
		spans, err := l.Spans(ref)
		if err != nil {
			return err
		}
		text, err := decodeIDs(opts.tokenizer, m, ids)
		if err != nil {
			return err
		}
		if g.json {
			return printJSON(g.stdout, map[string]any{"window": ref.Window, "ids": ids, "text": text, "spans": spans})
		}
		fmt.Fprintf(g.stdout, "sequence %d (%s, seed %d, T %d): window %d of the %s split\n", opts.seq, opts.order, opts.seed, opts.seqLen, ref.Window, opts.split)
		for _, s := range spans {
			fmt.Fprintf(g.stdout, "  tokens %d..%d of %d: %s row %d <- %s/%s row %d\n", s.Begin, s.End, s.DocTokens, s.File, s.Row, s.DocSet, s.DocFile, s.DocRow)
		}
		if text != "" {
			fmt.Fprintf(g.stdout, "\n%s\n", text)
		}
		return nil
	}
	if g.json {
		return printJSON(g.stdout, m)
	}
	return printTokenSummary(g.stdout, dir, m)
}

// decodeIDs decodes with the named tokenizer, or the set's when it is
// built in (gpt2, bytes); otherwise it returns "" (the ids are still
// printed).
func decodeIDs(name string, m *shards.Manifest, ids []int32) (string, error) {
	if name == "" {
		if m.Tokenizer.Name != "gpt2" && m.Tokenizer.Name != "bytes" {
			return "", nil
		}
		name = m.Tokenizer.Name
	}
	tok, err := tokenize.Load(name)
	if err != nil {
		return "", err
	}
	if tok.Fingerprint() != m.Tokenizer.Fingerprint {
		return "", fmt.Errorf("inspect: %w: tokenizer %s is not the set's (%s)", shards.ErrMismatch, tok.Fingerprint(), m.Tokenizer.Fingerprint)
	}
	u := make([]uint32, len(ids))
	for i, v := range ids {
		u[i] = uint32(v)
	}
	b, err := tok.Decode(u)
	return string(b), err
}

// writeTokens writes a split's stream in --format to standard output (also
// --out -), or to the file --out (then says what it wrote).
func writeTokens(ctx context.Context, g *globals, set *shards.Set, opts *inspectOptions) error {
	st, err := set.Stream(opts.split)
	if err != nil {
		return err
	}
	if opts.out == "" || opts.out == "-" { // "-": standard output, as Unix tools read it
		return st.Export(ctx, g.stdout, opts.format)
	}
	if err := st.ExportFile(ctx, opts.out, opts.format); err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, map[string]any{"path": opts.out, "split": opts.split, "format": opts.format, "tokens": st.Tokens, "documents": st.Docs})
	}
	fmt.Fprintf(g.stdout, "wrote the %s split (%d tokens, %d documents) to %s as %s\n", opts.split, st.Tokens, st.Docs, opts.out, opts.format)
	return nil
}
