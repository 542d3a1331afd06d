package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/internal/mpi"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
	"github.com/estkit/estkit/train"
)

type trainOptions struct {
	out       string
	data      []string
	resume    bool
	overwrite bool
	overlap   bool // --overlap-reduce: how ranks reduce, not what they train, so not a setting
	flags     map[string]*settingFlag
	// reduceDType is the type the ranks' gradients are averaged in on
	// GPUs (NCCL): fp32 or bf16.
	reduceDType string
}

// settingFlag holds the text of one of train.Settings as given; Resolve
// parses it, so that the command has no map of its own from flags to
// fields and a flag counts as given only when it was.
type settingFlag struct {
	kind, v string
}

func (s *settingFlag) String() string     { return s.v }
func (s *settingFlag) Set(v string) error { s.v = v; return nil }
func (s *settingFlag) Type() string       { return s.kind }

func newTrainCmd(g *globals) *cobra.Command {
	opts := &trainOptions{flags: map[string]*settingFlag{}}
	presets := make([]string, 0, len(train.Presets))
	for n := range train.Presets {
		presets = append(presets, n)
	}
	sort.Strings(presets)
	cmd := &cobra.Command{
		Use:   "train --preset NAME --data SET[:weight]... --out RUN",
		Short: "Train GPT-2 or Llama on token shards, with Evolving Subnetwork Training",
		Long: `train trains a GPT-2 or Llama model (on the CPU, or the GPU with --device cuda)
from token shard sets (estkit shard),
with Evolving Subnetwork Training when --est names a schedule: each step runs
a sampled subnetwork (heads, MLP neurons, blocks; outputs scaled by 1/p) on
gathered weights, stage by stage until the full model trains.

Settings resolve as the model's shape (--preset, or the "model" of --config),
then its family's training recipe, then --config FILE (JSON, the fields of
the run's config.json; unknown keys are errors), then the flags given. A flag
given is used as given: --clip 0 turns clipping off, --weight-decay 0 turns
weight decay off; a value out of range is an error naming it. The resolved
configuration is printed and saved in the run directory with metrics.jsonl,
stages.json, lineage.jsonl and checkpoints. Before allocating, the memory a
step needs is estimated and a configuration that does not fit is refused with
the largest micro-batch that does.

--resume continues the run in --out from its latest checkpoint exactly as an
uninterrupted run would have. It accepts --steps (to extend a run: the
learning-rate schedule and the EST stages keep the horizon the run started
with, so steps past it train at min-lr in the last stage), --eval-every,
--eval-batches, --checkpoint-every and --keep-checkpoints; any other setting
is refused by name when its value differs from the run's (so the command that
started the run, given again with --resume, resumes it). A new run needs --out
empty or new; --overwrite deletes the run there first, its own files only (files of yours
beside it, a log say, stay; a directory holding no run is refused), and no
run starts inside another run's directory.

Model presets: ` + strings.Join(presets, ", ") + `.
Llama models (a preset or a --config shape) train with the paper's TinyLlama
recipe (learning rate 4e-4, cosine decay) where lr and decay are not given.
EST presets (stage ends scale to --steps): est-gpt2 (the paper's: stage ends
20k, 70k, 150k of 150k steps, rates 0.5:0.5:0.5, 0.5:0.5:1, 1:1:1) and
est-tinyllama (our reconstruction of the paper's TinyLlama schedule: the same
rates over 0.2, 0.2 and 0.6 of the run, 25.0% of the block FLOPs saved).`,
		Example: `  estkit train --preset gpt2-tiny --data tok/owt --out runs/a --steps 300 --est est-gpt2
  estkit train --preset llama-tiny --data tok/slim:0.693584 --data tok/code:0.306416 --out runs/l --est est-tinyllama
  estkit train --preset gpt2-mini --data tok/slim:0.7 --data tok/code:0.3 --out runs/b --steps 300 --est-stages 100,300 --est-rates 0.5:0.5:1,1:1:1
  estkit train --out runs/a --resume
  estkit train --out runs/a --resume --steps 600`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runTrain(cmd, g, opts) },
	}
	f := cmd.Flags()
	for _, o := range train.Settings() {
		if o.Name == "data" {
			f.StringArrayVar(&opts.data, o.Name, nil, o.Usage)
			continue
		}
		v := &settingFlag{kind: o.Kind}
		opts.flags[o.Name] = v
		fl := f.VarPF(v, o.Name, "", o.Usage)
		fl.DefValue = o.Default
		if o.Kind == "bool" {
			fl.NoOptDefVal = "true"
		}
	}
	f.StringVarP(&opts.out, "out", "o", "", "run directory (required)")
	f.BoolVar(&opts.resume, "resume", false, "continue the run in --out from its latest checkpoint")
	f.BoolVar(&opts.overwrite, "overwrite", false, "delete the run in --out and start a new one (a directory holding anything else is refused)")
	f.StringVar(&opts.reduceDType, "reduce-dtype", "fp32", "the type data-parallel ranks average their gradients in on GPUs (NCCL; --device cuda under mpirun): fp32, or bf16 (half the bytes, bfloat16's precision)")
	f.BoolVar(&opts.overlap, "overlap-reduce", false, "under mpirun, all-reduce each block's gradients while the backward pass goes on (docs/SCALING.md); same result")
	cmd.MarkFlagRequired("out")
	cmd.RegisterFlagCompletionFunc("preset", cobra.FixedCompletions(presets, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// settings are the train.Settings given on the command line.
func (opts *trainOptions) settings(cmd *cobra.Command) []train.Setting {
	var set []train.Setting
	fl := cmd.Flags()
	for _, o := range train.Settings() {
		switch {
		case !fl.Changed(o.Name):
		case o.Name == "data":
			for _, d := range opts.data {
				set = append(set, train.Setting{Name: o.Name, Value: d})
			}
		default:
			set = append(set, train.Setting{Name: o.Name, Value: opts.flags[o.Name].v})
		}
	}
	return set
}

func runTrain(cmd *cobra.Command, g *globals, opts *trainOptions) (err error) {
	var cfg train.Config
	if opts.resume && opts.overwrite {
		return usageErrorf("train: --resume continues the run in %s, --overwrite deletes it: give one", opts.out)
	}
	defer func() {
		// a configuration the library refuses (a value out of range, EST
		// stages that do not fit the run) is the command line's: exit 2
		if errors.Is(err, train.ErrConfig) {
			if u := (*usageError)(nil); !errors.As(err, &u) {
				err = &usageError{err}
			}
		}
	}()
	switch {
	case opts.reduceDType != "fp32" && opts.reduceDType != "bf16":
		return usageErrorf("train: --reduce-dtype %q: fp32 or bf16", opts.reduceDType)
	case opts.reduceDType == "bf16" && g.device != "cuda":
		return usageErrorf("train: --reduce-dtype bf16 is the GPUs' reduction (NCCL): give --device cuda, or leave it fp32 on the CPU")
	}
	comm, err := joinRanks() // data parallel under mpirun (docs/SCALING.md)
	if err != nil {
		return err
	}
	var ranks train.Comm // nil: one process
	rank := 0
	if comm == nil && opts.overlap {
		g.log.Warn("--overlap-reduce: one process has no all-reduce to overlap (it applies under mpirun)")
	}
	if comm != nil {
		defer func() { err = leaveRanks(g, comm, err) }()
		ranks, rank = comm, comm.Rank()
		g.quiet = g.quiet || rank != 0 // rank 0 reports for all
	}
	if opts.resume {
		cfg, err = train.ResolveResume(opts.out, opts.settings(cmd))
	} else {
		cfg, err = train.Resolve(opts.settings(cmd))
	}
	if se := (*train.SettingError)(nil); errors.As(err, &se) {
		return &usageError{err} // a flag's value the library could not take
	}
	if err != nil {
		return err
	}
	switch {
	case g.quiet:
	case g.json: // a log record, as every line of stderr is then
		g.log.Info("configuration", "config", cfg)
	default:
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		fmt.Fprintf(g.stderr, "configuration:\n%s\n", b)
	}
	start := time.Now()
	var saved, full float64
	every, lastStage := max(1, cfg.Steps/25), -1
	ops, err := g.backendOn(mpi.LocalRank())
	if err != nil {
		return err
	}
	// on GPUs the ranks average their gradients with NCCL; the
	// communicator ends before MPI does (deferred after leaveRanks)
	reducer, closeReducer, err := deviceReducer(ops, comm, opts.reduceDType == "bf16")
	if err != nil {
		return err
	}
	if reducer != nil && opts.overlap {
		if closeReducer != nil {
			closeReducer(true)
		}
		return usageErrorf("train: --overlap-reduce overlaps the host (MPI) all-reduce with the backward pass; on GPUs NCCL reduces after it: leave --overlap-reduce out with --device cuda")
	}
	if closeReducer != nil {
		defer func() {
			if cerr := closeReducer(err != nil); err == nil {
				err = cerr
			}
		}()
	}
	res, err := train.Run(cmd.Context(), ops, cfg, opts.out, train.Options{Resume: opts.resume, Overwrite: opts.overwrite, Logger: g.log, Rank: rank, Comm: ranks, Reducer: reducer, OverlapReduce: opts.overlap,
		Resumed: func(s *train.Summary) { // the progress shows the whole run's saving
			done, all := s.BlockFLOPs()
			saved, full = all-done, all
		},
		Progress: func(r train.StepRecord, eta time.Duration) {
			saved += r.FullFLOPs.Blocks - r.FLOPs.Blocks
			full += r.FullFLOPs.Blocks
			if g.quiet || (r.Step+1)%every != 0 && r.Stage == lastStage && r.Step+1 != cfg.Steps && r.ValLoss == 0 {
				return
			}
			lastStage = r.Stage
			if g.json {
				attrs := []any{"step", r.Step + 1, "steps", cfg.Steps, "stage", r.Stage, "rates", r.Rates.String(), "loss", r.Loss, "lr", r.LR,
					"tokens_per_s", r.TokensPerS, "block_flops_saved", saved / full, "eta_s", eta.Round(time.Second).Seconds()}
				if r.ValLoss > 0 {
					attrs = append(attrs, "val_loss", r.ValLoss, "val_batches", r.ValBatches)
				}
				g.log.Info("step", attrs...)
				return
			}
			val := ""
			if r.ValLoss > 0 {
				val = fmt.Sprintf(" val %.4f", r.ValLoss)
			}
			fmt.Fprintf(g.stderr, "step %d/%d  stage %d (%s)  loss %.4f%s  lr %.2e  %.0f tok/s  block FLOPs saved %.1f%%  ETA %s\n",
				r.Step+1, cfg.Steps, r.Stage, r.Rates, r.Loss, val, r.LR, r.TokensPerS, 100*saved/full, eta.Round(time.Second))
		}})
	if err != nil || rank != 0 {
		return err
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	took := time.Since(start).Round(time.Millisecond)
	if res.ResumedAt > 0 { // the counts are the whole run's, the time this process's
		fmt.Fprintf(g.stdout, "%s: %d steps, %d tokens; resumed at step %d, this process ran %d steps in %s; loss curves in %s\n\n", opts.out, res.Steps, res.Tokens,
			res.ResumedAt, res.Steps-res.ResumedAt, took, filepath.Join(opts.out, train.LossPlot))
	} else {
		fmt.Fprintf(g.stdout, "%s: %d steps, %d tokens in %s; loss curves in %s\n\n", opts.out, res.Steps, res.Tokens,
			took, filepath.Join(opts.out, train.LossPlot))
	}
	return printStages(g.stdout, res.Stages)
}

func printStages(w io.Writer, stages []train.StageStats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\trates\tsteps\ttokens\tloss at end\tblock FLOPs saved\tall FLOPs saved\tseconds\tpeak RSS MiB\t")
	for _, s := range stages {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.4f\t%.1f%%\t%.1f%%\t%.1f\t%d\t\n", s.Stage, s.Rates, s.Steps, s.Tokens, s.LastLoss,
			100*(1-s.FLOPs.Blocks/s.FullFLOPs.Blocks), 100*(1-s.FLOPs.All/s.FullFLOPs.All), s.Seconds, s.PeakRSS>>20)
	}
	return tw.Flush()
}

func newExportCmd(g *globals) *cobra.Command {
	var run, hf, tokName, dtype, maxShard string
	cmd := &cobra.Command{
		Use:   "export --run RUN --hf DIR",
		Short: "Write a run's latest weights and its tokenizer as a Hugging Face model folder",
		Long: `export writes a run's latest weights as a folder that transformers'
from_pretrained loads, model and tokenizer together: config.json,
generation_config.json, the weights (model.safetensors, or shards of at most
--max-shard-size with model.safetensors.index.json), and the tokenizer the
run's data was sharded with: tokenizer.json, tokenizer_config.json and, for
GPT-2, vocab.json and merges.txt (for a SentencePiece model, its
tokenizer.model beside a tokenizer.json made from it). A tokenizer that is
not built in is named with --tokenizer; its fingerprint must be the data's,
or it is an earlier export's folder or tokenizer.json. BOS and EOS ids come
from the tokenizer.`,
		Example: `  estkit export --run runs/gpt2 --hf hf/gpt2
  estkit export --run runs/tinyllama --tokenizer TinyLlama/tokenizer.model --hf hf/tinyllama --dtype bf16
  estkit export --run runs/big --hf hf/big --max-shard-size 2GB
  # then, in Python: AutoModelForCausalLM.from_pretrained("hf/gpt2"), AutoTokenizer.from_pretrained("hf/gpt2")`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			shard, err := parseSize(maxShard)
			if err != nil {
				return usageErrorf("export: --max-shard-size: %w", err)
			}
			if dtype != "fp32" && dtype != "bf16" {
				return usageErrorf("export: --dtype %q: want fp32 or bf16", dtype)
			}
			if err := checkOutLink("export", hf); err != nil { // not inside a run
				return err
			}
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, cfg, err := train.LoadRun(ops, run)
			if err != nil {
				return asCommand("export", err)
			}
			o := train.ExportOptions{DType: dtype, MaxShardSize: shard}
			note, err := exportTokenizer(cfg, tokName, &o)
			if err != nil {
				return err
			}
			if err := train.ExportHF(m, hf, o); err != nil {
				return asCommand("export", err)
			}
			if note != "" {
				fmt.Fprintf(g.stderr, "export: %s\n", note)
			}
			fmt.Fprintf(g.stdout, "wrote a Hugging Face model folder in %s\n", hf)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&run, "run", "", "run directory")
	f.StringVar(&hf, "hf", "", "output directory")
	f.StringVar(&tokName, "tokenizer", "", "the tokenizer file the run's data was sharded with (tokenizer.json or tokenizer.model; default: the data's, when built in)")
	f.StringVar(&dtype, "dtype", "fp32", "the weights' type: fp32 or bf16")
	f.StringVar(&maxShard, "max-shard-size", "5GB", "weights over this size are written as shards with an index (bytes, or with KB, MB, GB; KiB, MiB, GiB; any case)")
	cmd.MarkFlagRequired("run")
	cmd.MarkFlagRequired("hf")
	return cmd
}

// exportTokenizer puts the files and BOS/EOS ids of the tokenizer the run's
// first data set was sharded with into o: the built-in gpt2 from itself,
// another from the file --tokenizer names once its fingerprint is the
// data's. The bytes tokenizer has no Hugging Face form: a note says so.
func exportTokenizer(cfg *train.Config, name string, o *train.ExportOptions) (note string, err error) {
	if len(cfg.Data) == 0 {
		return "", fmt.Errorf("export: the run's configuration names no data, so no tokenizer")
	}
	set, err := shards.Open(cfg.Data[0].Dir, false)
	if err != nil {
		return "", err
	}
	info := set.Manifest.Tokenizer
	set.Close()
	tok, src, err := dataTokenizer("export", name, info)
	if err != nil {
		return "", err
	}
	files, err := tokenize.HFFiles(tok, src, cfg.Model.MaxT)
	if errors.Is(err, tokenize.ErrNoHF) {
		return "the bytes tokenizer has no Hugging Face form: the folder holds the model alone", nil
	}
	if err != nil {
		return "", err
	}
	o.Files = files
	o.Special = &train.SpecialTokens{BOS: specialID(tok, true), EOS: specialID(tok, false)}
	if o.Special.BOS < 0 { // GPT-2's one special token ends and begins a text alike, as Hugging Face's GPT-2 has it
		o.Special.BOS = o.Special.EOS
	}
	return "", nil
}

// dataTokenizer loads the tokenizer --tokenizer names (name; "" for the
// data's own when it is built in) for a command (cmd) that reads a run
// whose data was sharded with info's, and the file it came from ("" for a
// built-in one). A folder stands for the tokenizer.json or tokenizer.model
// in it, and a tokenizer.json that an earlier export wrote from the data's
// tokenizer stands for that tokenizer; any other is a mismatch.
func dataTokenizer(cmd, name string, info shards.TokenizerInfo) (*tokenize.Tokenizer, string, error) {
	src := name
	if name == "" {
		if info.Name != "gpt2" && info.Name != "bytes" {
			return nil, "", fmt.Errorf("%s: the run's data was sharded with %s: name that tokenizer's file with --tokenizer", cmd, info.Fingerprint)
		}
		name = info.Name
	}
	if name == "gpt2" || name == "bytes" {
		src = ""
	}
	tok, err := tokenize.Load(name)
	if err != nil {
		return nil, "", fmt.Errorf("%s: --tokenizer: %w", cmd, err)
	}
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		for _, f := range []string{"tokenizer.json", "tokenizer.model"} {
			if _, err := os.Stat(filepath.Join(src, f)); err == nil {
				src = filepath.Join(src, f)
				break
			}
		}
	}
	if tok.Fingerprint() != info.Fingerprint {
		own, ownSrc, err := exportedTokenizer(src, info)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", cmd, err)
		}
		if own == nil {
			return nil, "", fmt.Errorf("%s: %w: tokenizer %s is %s, the run's data was sharded with %s", cmd, shards.ErrMismatch, name, tok.Fingerprint(), info.Fingerprint)
		}
		tok, src = own, ownSrc
	}
	return tok, src, nil
}

// exportedTokenizer: when src is a tokenizer.json that an earlier export
// wrote from the data's tokenizer (the built-in gpt2, or the
// tokenizer.model beside it), that tokenizer and the file to export it
// from; nil when src is another tokenizer.
func exportedTokenizer(src string, info shards.TokenizerInfo) (*tokenize.Tokenizer, string, error) {
	if !strings.HasSuffix(src, ".json") {
		return nil, "", nil
	}
	candidates := []string{filepath.Join(filepath.Dir(src), "tokenizer.model")}
	if info.Name == "gpt2" {
		candidates = []string{"gpt2"}
	}
	for _, c := range candidates {
		if c != "gpt2" {
			if _, err := os.Stat(c); err != nil {
				continue
			}
		}
		tok, err := tokenize.Load(c)
		if err != nil || tok.Fingerprint() != info.Fingerprint {
			continue
		}
		cs := c
		if c == "gpt2" {
			cs = ""
		}
		ok, err := tokenize.IsHFExportOf(src, tok, cs)
		if err != nil {
			return nil, "", err
		}
		if ok {
			return tok, cs, nil
		}
	}
	return nil, "", nil
}

// specialID is the tokenizer's BOS (or EOS) id, -1 when it has none.
func specialID(tok *tokenize.Tokenizer, bos bool) int64 {
	ids, err := tok.Encode("", tokenize.EncodeOptions{BOS: bos, EOS: !bos})
	if err != nil || len(ids) != 1 {
		return -1
	}
	return int64(ids[0])
}

// parseSize reads a byte count: a number, optionally with KB, MB, GB (powers
// of 1000, as Hugging Face's "5GB") or KiB, MiB, GiB, in any case.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range units {
		if len(num) >= len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) { // "5gb" as "5GB", as Hugging Face reads it
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: want a positive size such as 5GB, 500MB or 1000000", s)
	}
	return n * mult, nil
}

func newEvalCmd(g *globals) *cobra.Command {
	var run, split string
	var batches int
	cmd := &cobra.Command{
		Use:   "eval --run RUN [--split val]",
		Short: "Loss of a run's latest weights on a split of its first data set",
		Example: `  estkit eval --run runs/gpt2
  estkit eval --run runs/gpt2 --split train --batches 32
  estkit --json eval --run runs/gpt2   # {"batches": 8, "loss": 3.41, "split": "val"}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Checked before the run is read: a mistyped value is a
			// usage error of eval's, not a configuration error of train's.
			if split != shards.Train && split != shards.Val {
				return usageErrorf("eval: --split %q: want %s or %s", split, shards.Train, shards.Val)
			}
			if batches < 1 {
				return usageErrorf("eval: --batches %d: want 1 or more", batches)
			}
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, cfg, err := train.LoadRun(ops, run)
			if err != nil {
				return asCommand("eval", err)
			}
			m.SetInterrupt(cmd.Context().Err) // the first Ctrl-C stops it between blocks
			loss, n, err := train.Eval(m, cfg, split, batches)
			if errors.Is(err, shards.ErrEmptySplit) && split == shards.Val {
				return fmt.Errorf("eval: %w (--split train evaluates on the training split)", err)
			}
			if err != nil {
				return asCommand("eval", err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) { // JSON cannot hold it, and no loss is one
				return fmt.Errorf("eval: the %s loss of %s is %v: its weights are not finite numbers", split, run, loss)
			}
			if g.json {
				return printJSON(g.stdout, map[string]any{"split": split, "loss": loss, "batches": n})
			}
			note := ""
			if n < batches {
				note = fmt.Sprintf(" (the split holds %d of the %d asked)", n, batches)
			}
			plural := "es"
			if n == 1 {
				plural = ""
			}
			fmt.Fprintf(g.stdout, "%s loss %.4f over %d batch%s of %d×%d%s\n", split, loss, n, plural, cfg.Batch, cfg.Seq, note)
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&split, "split", shards.Val, "split: train or val")
	cmd.Flags().IntVar(&batches, "batches", 8, "batches to average over (at most what the split holds; the number run is printed)")
	cmd.MarkFlagRequired("run")
	return cmd
}

func newSampleCmd(g *globals) *cobra.Command {
	var run, prompt, tokName string
	var n, topK int
	var temp float64
	var seed uint64
	cmd := &cobra.Command{
		Use:   "sample --run RUN --prompt TEXT",
		Short: "Generate text from a run's latest weights",
		Example: `  estkit sample --run runs/gpt2 --prompt "The meaning of life is"
  estkit sample --run runs/gpt2 --prompt "func main" --tokens 200 --temperature 0   # greedy
  estkit sample --run runs/tinyllama --tokenizer TinyLlama/tokenizer.model --prompt "def main" --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSampleFlags(n, temp, topK); err != nil {
				return err
			}
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, cfg, err := train.LoadRun(ops, run)
			if err != nil {
				return asCommand("sample", err)
			}
			set, err := train.OpenData(cfg, 0)
			if err != nil {
				return err
			}
			info := set.Manifest.Tokenizer
			set.Close()
			tok, _, err := dataTokenizer("sample", tokName, info)
			if err != nil {
				return err
			}
			ids, err := tok.Encode(prompt, tokenize.EncodeOptions{BOS: info.BOS >= 0})
			if err != nil {
				return err
			}
			if len(ids) == 0 && info.EOS >= 0 {
				ids = []uint32{uint32(info.EOS)} // a document boundary
			}
			if len(ids) == 0 {
				return fmt.Errorf("sample: an empty prompt and no end-of-document token to start from")
			}
			in := make([]int32, len(ids))
			for i, v := range ids {
				in[i] = int32(v)
			}
			// The text is printed as it is made: after each token, the
			// part of the decoded text that can no longer change (a byte-
			// level token may end inside a character, which decodes as
			// U+FFFD until the rest of it comes).
			printed := 0
			show := func(out []int32, final bool) error {
				u := make([]uint32, len(out))
				for i, v := range out {
					u[i] = uint32(v)
				}
				text, err := tok.Decode(u)
				if err != nil {
					return err
				}
				cut := len(text)
				if !final {
					cut = stableEnd(text)
				}
				if cut > printed {
					if _, err := g.stdout.Write(text[printed:cut]); err != nil {
						return err
					}
					printed = cut
				}
				return nil
			}
			out, err := train.GenerateEach(cmd.Context(), m, in, n, temp, topK, seed, func(out []int32) error { return show(out, false) })
			if serr := show(out, true); err == nil {
				err = serr
			}
			fmt.Fprintln(g.stdout)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&run, "run", "", "run directory")
	f.StringVar(&prompt, "prompt", "", "text to continue")
	f.StringVar(&tokName, "tokenizer", "", "the tokenizer the run's data was sharded with (default: the data's, when built in: gpt2 or bytes)")
	f.IntVar(&n, "tokens", 64, "tokens to generate")
	floatFlag(f, &temp, "temperature", 0.8, "sampling temperature (0: greedy)")
	f.IntVar(&topK, "top-k", 40, "sample among the k most likely tokens (0: all)")
	f.Uint64Var(&seed, "seed", 0, "sampling seed")
	cmd.MarkFlagRequired("run")
	return cmd
}

func newESTTraceCmd(g *globals) *cobra.Command {
	var run, steps string
	cmd := &cobra.Command{
		Use:   "est-trace --run RUN [--steps A:B]",
		Short: "Print, per step, the EST stage, rates and the exact blocks, heads and neurons chosen",
		Long: `est-trace recomputes a run's subnetworks from its recorded seed and options
(sampling is a pure function of them) and prints one JSON line per step and
draw: step, draw, stage, rates, and the blocks, heads and MLP neurons chosen
(null: all). Steps A:B and stages are 0-based (as in metrics.jsonl and
stages.json), B excluded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, to := 0, -1
			if steps != "" {
				a, z, ok := strings.Cut(steps, ":")
				var e1, e2 error
				from, e1 = strconv.Atoi(a)
				to, e2 = strconv.Atoi(z)
				if !ok || e1 != nil || e2 != nil || from < 0 || to < from {
					return usageErrorf("est-trace: --steps %q: want A:B with 0 ≤ A ≤ B", steps)
				}
			}
			c, err := train.ReadRunConfig(run)
			if err != nil {
				return asCommand("est-trace", err)
			}
			cfg := *c
			// The run's steps: its configured horizon, or more where a
			// resume with --steps extended it (metrics.jsonl holds them).
			have := cfg.Steps
			if recs, err := train.ReadMetrics(run); err == nil && len(recs) > 0 {
				have = max(have, recs[len(recs)-1].Step+1)
			}
			if cfg.Schedule == nil { // said first: no range of steps has subnetworks to trace
				return fmt.Errorf("est-trace: %s trained without EST (--est off)", run)
			}
			if from >= have && to != from { // A:A is an empty range anywhere
				return fmt.Errorf("est-trace: --steps %s: %s has %d steps (0:%d)", steps, run, have, have)
			}
			if to < 0 {
				to = have
			} else if to > have {
				g.log.Warn(fmt.Sprintf("the run has %d steps: steps %d:%d were never trained and are not traced", have, have, to))
				to = have
			}
			s := train.NewSampler(&cfg)
			draws := 1
			if cfg.SampleEvery == "microbatch" {
				draws = cfg.Accum
			}
			enc := json.NewEncoder(g.stdout)
			for step := from; step < to; step++ {
				if err := cmd.Context().Err(); err != nil {
					return err // a range of any size stops at the first Ctrl-C
				}
				for d := 0; d < draws; d++ {
					sel, stage, r := s.Sample(step, d)
					rec := map[string]any{"step": step, "draw": d, "stage": stage, "rates": r, "layers": nil, "heads": nil, "neurons": nil}
					if sel != nil {
						heads, neurons := sel.Heads, sel.Neurons
						if sel.Layers != nil { // blocks that do not run: null
							heads, neurons = make([][]int32, len(sel.Heads)), make([][]int32, len(sel.Neurons))
							for _, l := range sel.Layers {
								heads[l], neurons[l] = sel.Heads[l], sel.Neurons[l]
							}
						}
						rec["layers"], rec["heads"], rec["neurons"] = sel.Layers, heads, neurons
					}
					if err := enc.Encode(rec); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&steps, "steps", "", "steps A:B (default: all)")
	cmd.MarkFlagRequired("run")
	return cmd
}

// asCommand gives an error of the train package (which names itself,
// "train: ...") the name of the command that met it: eval, sample, export
// and est-trace read runs through train, and a user who typed "estkit
// eval" should not read "train:". The error still wraps the original.
func asCommand(name string, err error) error {
	msg, ok := strings.CutPrefix(err.Error(), "train: ")
	if !ok {
		return err
	}
	msg = strings.TrimPrefix(msg, name+": ") // train's "export: ..." is already the command's
	return &namedError{msg: name + ": " + msg, err: err}
}

type namedError struct {
	msg string
	err error
}

func (e *namedError) Error() string { return e.msg }
func (e *namedError) Unwrap() error { return e.err }

// stableEnd is where text stops being final while tokens are still being
// added: before a trailing incomplete UTF-8 sequence or U+FFFD, which the
// next token may complete into a character.
func stableEnd(text []byte) int {
	end := len(text)
	for end > 0 {
		r, size := utf8.DecodeLastRune(text[:end])
		if r != utf8.RuneError {
			break
		}
		end -= size
	}
	return end
}
