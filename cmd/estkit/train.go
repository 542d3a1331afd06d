package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
	"github.com/estkit/estkit/train"
)

type trainOptions struct {
	preset, config, out, est, estStages, estRates string
	data                                          []string
	resume, overwrite                             bool
	cfg                                           train.Config
}

func newTrainCmd(g *globals) *cobra.Command {
	opts := &trainOptions{}
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

Settings resolve as defaults < --config FILE (JSON, the fields of the run's
config.json) < flags; the resolved configuration is printed and saved in the
run directory with metrics.jsonl, stages.json, lineage.jsonl and checkpoints.
--resume continues the run in --out from its latest checkpoint exactly as an
uninterrupted run would have. A new run needs --out empty or new;
--overwrite deletes the run there first (and never a directory holding
anything else).

Model presets: ` + strings.Join(presets, ", ") + `.
Llama presets default to the paper's TinyLlama recipe (learning rate 4e-4,
cosine decay) where --lr and --decay are not given.
EST presets (stage ends scale to --steps): est-gpt2 (the paper's: stage ends
20k, 70k, 150k of 150k steps, rates 0.5:0.5:0.5, 0.5:0.5:1, 1:1:1) and
est-tinyllama (our reconstruction of the paper's TinyLlama schedule: the same
rates over 0.2, 0.2 and 0.6 of the run, 25.0% of the block FLOPs saved).`,
		Example: `  estkit train --preset gpt2-tiny --data tok/owt --out runs/a --steps 300 --est est-gpt2
  estkit train --preset llama-tiny --data tok/slim:0.693584 --data tok/code:0.306416 --out runs/l --est est-tinyllama
  estkit train --preset gpt2-mini --data tok/slim:0.7 --data tok/code:0.3 --out runs/b --est-stages 100,300 --est-rates 0.5:0.5:1,1:1:1
  estkit train --out runs/a --resume`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runTrain(cmd, g, opts) },
	}
	f := cmd.Flags()
	c := &opts.cfg
	f.StringVar(&opts.preset, "preset", "gpt2-tiny", "model preset: "+strings.Join(presets, ", "))
	f.StringVar(&opts.config, "config", "", "JSON configuration file (fields of a run's config.json)")
	f.StringArrayVar(&opts.data, "data", nil, "token shard set, optionally with a mixture weight: DIR or DIR:WEIGHT (repeatable)")
	f.StringVarP(&opts.out, "out", "o", "", "run directory (required)")
	f.IntVar(&c.Steps, "steps", 100, "optimizer steps")
	f.IntVar(&c.Batch, "batch", 4, "micro-batch size B")
	f.IntVar(&c.Seq, "seq", 64, "sequence length T")
	f.IntVar(&c.Accum, "accum", 1, "micro-batches per step (gradient accumulation)")
	f.Float64Var(&c.LR, "lr", 6e-4, "peak learning rate")
	f.Float64Var(&c.MinLR, "min-lr", 0, "final learning rate (default: lr/10)")
	f.IntVar(&c.Warmup, "warmup", 0, "warmup steps")
	f.StringVar(&c.Decay, "decay", "linear", "learning-rate decay after warmup: linear or cosine")
	f.Float64Var(&c.WeightDecay, "weight-decay", 0.1, "AdamW weight decay (matrices only)")
	f.Float64Var(&c.Clip, "clip", 1, "clip the global gradient norm to this (0: off)")
	f.StringVar(&c.MatMul, "matmul", "", "precision of the matrix products: fp32 (the default), or bf16 (inputs rounded to bfloat16, float32 accumulation; --device cuda)")
	f.StringVar(&c.Attention, "attention", "", "precision of attention's products, forward and backward: fp32 (the default), or bf16 (tensor cores, float32 softmax and accumulation; --device cuda)")
	f.StringVar(&c.Activations, "activations", "", "how activations are stored: fp32 (the default), or bf16 (half the memory and memory traffic; every op computes in float32, the products read a bfloat16 copy of the weights; --device cuda)")
	f.Uint64Var(&c.Seed, "seed", 0, "seed of initialisation, data order and subnetwork sampling")
	f.StringVar(&c.Order, "order", shards.Shuffle, "data order: shuffle or sequential")
	f.StringVar(&c.InitFrom, "init-from", "", "start from a Hugging Face model.safetensors (GPT2LMHeadModel or LlamaForCausalLM, as the preset)")
	f.StringVar(&opts.est, "est", "off", "EST schedule: a preset (est-gpt2, est-tinyllama) or off")
	f.StringVar(&opts.estStages, "est-stages", "", "custom EST stage ends in steps, e.g. 100,300,600")
	f.StringVar(&opts.estRates, "est-rates", "", "custom EST rates per stage, pH:pM:pL, e.g. 0.5:0.5:0.5,0.5:0.5:1,1:1:1")
	f.StringVar(&c.Sampler.LayerMode, "layer-mode", "fixed", "sampled blocks: fixed (exactly round(L·pL)) or bernoulli")
	f.BoolVar(&c.Sampler.Shared, "shared", false, "every block uses the same sampled heads and neurons")
	f.IntVar(&c.Sampler.Group, "neuron-group", 1, "sample MLP neurons in groups of this many")
	f.StringVar(&c.Sampler.Heads, "est-heads", "groups", "with grouped-query attention, sample whole key/value groups (groups) or query heads within every group (within)")
	f.StringVar(&c.Sampler.Update, "est-update", "dense", "AdamW on unsampled heads and neurons: dense (zero gradient, still moved by momentum and decay) or sampled (left as they are)")
	f.StringVar(&c.SampleEvery, "sample-every", "step", "draw a subnetwork per optimizer step or per microbatch")
	f.IntVar(&c.EvalEvery, "eval-every", 0, "val loss every N steps (0: at the end only)")
	f.IntVar(&c.EvalBatches, "eval-batches", 4, "batches of the val split per evaluation")
	f.IntVar(&c.CheckpointEvery, "checkpoint-every", 0, "checkpoint every N steps (always at the end)")
	f.BoolVar(&opts.resume, "resume", false, "continue the run in --out from its latest checkpoint")
	f.BoolVar(&opts.overwrite, "overwrite", false, "delete the run in --out and start a new one (a directory holding anything else is refused)")
	cmd.MarkFlagRequired("out")
	cmd.RegisterFlagCompletionFunc("preset", cobra.FixedCompletions(presets, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runTrain(cmd *cobra.Command, g *globals, opts *trainOptions) error {
	var cfg train.Config
	if opts.resume {
		c, err := train.ReadRunConfig(opts.out)
		if err != nil {
			return err
		}
		cfg = *c
	} else {
		model, ok := train.Presets[opts.preset]
		if !ok {
			return fmt.Errorf("train: no model preset %q", opts.preset)
		}
		cfg = opts.cfg
		if opts.config != "" {
			b, err := os.ReadFile(opts.config)
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			file := train.ConfigFile{Config: opts.cfg} // a run's config.json, with its format marker, or a bare configuration
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&file); err != nil {
				return fmt.Errorf("train: %s: %w", opts.config, err)
			}
			fileCfg := file.Config
			// flags given on the command line win over the file
			cfg = fileCfg
			reapplyFlags(cmd, &cfg, &opts.cfg)
		}
		cfg.Preset = opts.preset
		if cfg.Model.Layers == 0 {
			cfg.Model = model
		} else if !cmd.Flags().Changed("preset") {
			cfg.Preset = "" // the model's shape came from --config
		}
		if cfg.Model.IsLlama() {
			fl := cmd.Flags()
			if !fl.Changed("lr") && opts.config == "" {
				cfg.LR = 4e-4
			}
			if !fl.Changed("decay") && opts.config == "" {
				cfg.Decay = "cosine"
			}
		}
		if len(opts.data) > 0 {
			cfg.Data = nil
			for _, d := range opts.data {
				dir, w := d, 1.0
				if i := strings.LastIndexByte(d, ':'); i > 0 {
					if v, err := strconv.ParseFloat(d[i+1:], 64); err == nil {
						dir, w = d[:i], v
					}
				}
				cfg.Data = append(cfg.Data, train.Data{Dir: dir, Weight: w})
			}
		}
		switch {
		case opts.estStages != "" || opts.estRates != "":
			s, err := train.ParseSchedule(opts.estStages, opts.estRates)
			if err != nil {
				return err
			}
			cfg.EST, cfg.Schedule = "custom", &s
		case opts.est == "off":
			if cfg.EST == "" {
				cfg.EST = "off"
			}
		default:
			p, ok := train.ESTPresets[opts.est]
			if !ok {
				return fmt.Errorf("train: no EST preset %q (est-gpt2, est-tinyllama or off)", opts.est)
			}
			s := p.Scaled(cfg.Steps)
			cfg.EST, cfg.Schedule = opts.est, &s
		}
		cfg.Defaults()
		if err := cfg.Check(); err != nil {
			return err
		}
	}
	cfg.Defaults()
	if !g.quiet {
		b, _ := json.MarshalIndent(cfg, "", "  ")
		fmt.Fprintf(g.stderr, "configuration:\n%s\n", b)
	}
	start := time.Now()
	var saved, full float64
	every, lastStage := max(1, cfg.Steps/25), -1
	ops, err := g.backend()
	if err != nil {
		return err
	}
	res, err := train.Run(cmd.Context(), ops, cfg, opts.out, train.Options{Resume: opts.resume, Overwrite: opts.overwrite, Logger: g.log,
		Progress: func(r train.StepRecord, eta time.Duration) {
			saved += r.FullFLOPs.Blocks - r.FLOPs.Blocks
			full += r.FullFLOPs.Blocks
			if g.quiet || (r.Step+1)%every != 0 && r.Stage == lastStage && r.Step+1 != cfg.Steps && r.ValLoss == 0 {
				return
			}
			lastStage = r.Stage
			val := ""
			if r.ValLoss > 0 {
				val = fmt.Sprintf(" val %.4f", r.ValLoss)
			}
			fmt.Fprintf(g.stderr, "step %d/%d  stage %d (%s)  loss %.4f%s  lr %.2e  %.0f tok/s  block FLOPs saved %.1f%%  ETA %s\n",
				r.Step+1, cfg.Steps, r.Stage+1, r.Rates, r.Loss, val, r.LR, r.TokensPerS, 100*saved/full, eta.Round(time.Second))
		}})
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(g.stdout, res)
	}
	fmt.Fprintf(g.stdout, "%s: %d steps, %d tokens in %s; loss curves in %s\n\n", opts.out, res.Steps, res.Tokens,
		time.Since(start).Round(time.Millisecond), filepath.Join(opts.out, train.LossPlot))
	return printStages(g.stdout, res.Stages)
}

// reapplyFlags copies the flags set on the command line over a
// configuration read from a file.
func reapplyFlags(cmd *cobra.Command, dst, flags *train.Config) {
	fl := cmd.Flags()
	set := map[string]func(){
		"steps": func() { dst.Steps = flags.Steps }, "batch": func() { dst.Batch = flags.Batch }, "seq": func() { dst.Seq = flags.Seq },
		"accum": func() { dst.Accum = flags.Accum }, "lr": func() { dst.LR = flags.LR }, "min-lr": func() { dst.MinLR = flags.MinLR },
		"warmup": func() { dst.Warmup = flags.Warmup }, "decay": func() { dst.Decay = flags.Decay },
		"weight-decay": func() { dst.WeightDecay = flags.WeightDecay }, "clip": func() { dst.Clip = flags.Clip }, "matmul": func() { dst.MatMul = flags.MatMul },
		"attention": func() { dst.Attention = flags.Attention }, "activations": func() { dst.Activations = flags.Activations }, "seed": func() { dst.Seed = flags.Seed }, "order": func() { dst.Order = flags.Order }, "init-from": func() { dst.InitFrom = flags.InitFrom },
		"layer-mode": func() { dst.Sampler.LayerMode = flags.Sampler.LayerMode }, "shared": func() { dst.Sampler.Shared = flags.Sampler.Shared },
		"est-update":   func() { dst.Sampler.Update = flags.Sampler.Update },
		"est-heads":    func() { dst.Sampler.Heads = flags.Sampler.Heads },
		"neuron-group": func() { dst.Sampler.Group = flags.Sampler.Group }, "sample-every": func() { dst.SampleEvery = flags.SampleEvery },
		"eval-every": func() { dst.EvalEvery = flags.EvalEvery }, "eval-batches": func() { dst.EvalBatches = flags.EvalBatches },
		"checkpoint-every": func() { dst.CheckpointEvery = flags.CheckpointEvery },
	}
	for name, apply := range set {
		if fl.Changed(name) {
			apply()
		}
	}
}

func printStages(w io.Writer, stages []train.StageStats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\trates\tsteps\ttokens\tloss at end\tblock FLOPs saved\tall FLOPs saved\tseconds\tpeak RSS MiB\t")
	for _, s := range stages {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%.4f\t%.1f%%\t%.1f%%\t%.1f\t%d\t\n", s.Stage+1, s.Rates, s.Steps, s.Tokens, s.LastLoss,
			100*(1-s.FLOPs.Blocks/s.FullFLOPs.Blocks), 100*(1-s.FLOPs.All/s.FullFLOPs.All), s.Seconds, s.PeakRSS>>20)
	}
	return tw.Flush()
}

func newExportCmd(g *globals) *cobra.Command {
	var run, hf string
	cmd := &cobra.Command{
		Use:   "export --run RUN --hf DIR",
		Short: "Write a run's latest weights as a Hugging Face GPT2LMHeadModel (model.safetensors, config.json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, _, err := train.LoadRun(ops, run)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(hf, 0o755); err != nil {
				return err
			}
			if err := train.ExportHF(m, hf); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s/model.safetensors and %s/config.json\n", hf, hf)
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&hf, "hf", "", "output directory")
	cmd.MarkFlagRequired("run")
	cmd.MarkFlagRequired("hf")
	return cmd
}

func newEvalCmd(g *globals) *cobra.Command {
	var run, split string
	var batches int
	cmd := &cobra.Command{
		Use:   "eval --run RUN [--split val]",
		Short: "Loss of a run's latest weights on a split of its first data set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, cfg, err := train.LoadRun(ops, run)
			if err != nil {
				return err
			}
			loss, err := train.Eval(m, cfg, split, batches)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdout, map[string]any{"split": split, "loss": loss, "batches": batches})
			}
			fmt.Fprintf(g.stdout, "%s loss %.4f over %d batches of %d×%d\n", split, loss, batches, cfg.Batch, cfg.Seq)
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&split, "split", shards.Val, "split: train or val")
	cmd.Flags().IntVar(&batches, "batches", 8, "batches to average over")
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := g.backend()
			if err != nil {
				return err
			}
			m, cfg, err := train.LoadRun(ops, run)
			if err != nil {
				return err
			}
			set, err := shards.Open(cfg.Data[0].Dir, false)
			if err != nil {
				return err
			}
			info := set.Manifest.Tokenizer
			set.Close()
			if tokName == "" {
				if info.Name != "gpt2" && info.Name != "bytes" {
					return fmt.Errorf("sample: the run's data was sharded with %s: name that tokenizer's file with --tokenizer", info.Fingerprint)
				}
				tokName = info.Name
			}
			tok, err := tokenize.Load(tokName)
			if err != nil {
				return err
			}
			if info.Fingerprint != tok.Fingerprint() {
				return fmt.Errorf("sample: %w: tokenizer %s, the run's data was sharded with %s", shards.ErrMismatch, tok.Fingerprint(), info.Fingerprint)
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
			out, err := train.Generate(m, in, n, temp, topK, seed)
			if err != nil {
				return err
			}
			u := make([]uint32, len(out))
			for i, v := range out {
				u[i] = uint32(v)
			}
			text, err := tok.Decode(u)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n", text)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&run, "run", "", "run directory")
	f.StringVar(&prompt, "prompt", "", "text to continue")
	f.StringVar(&tokName, "tokenizer", "", "the tokenizer the run's data was sharded with (default: the data's, when built in: gpt2 or bytes)")
	f.IntVar(&n, "tokens", 64, "tokens to generate")
	f.Float64Var(&temp, "temperature", 0.8, "sampling temperature (0: greedy)")
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
			c, err := train.ReadRunConfig(run)
			if err != nil {
				return err
			}
			cfg := *c
			from, to := 0, cfg.Steps
			if steps != "" {
				a, z, ok := strings.Cut(steps, ":")
				var e1, e2 error
				from, e1 = strconv.Atoi(a)
				to, e2 = strconv.Atoi(z)
				if !ok || e1 != nil || e2 != nil || from < 0 || to < from {
					return fmt.Errorf("est-trace: --steps %q: want A:B with 0 ≤ A ≤ B", steps)
				}
			}
			if cfg.Schedule == nil {
				return fmt.Errorf("est-trace: %s trained without EST (--est off)", run)
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
