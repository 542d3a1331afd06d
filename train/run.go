package train

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

// Data is one token shard set of the mixture and its weight.
type Data struct {
	Dir    string  `json:"dir"`
	Weight float64 `json:"weight"`
}

// Config is a run's resolved configuration, saved in the run directory.
type Config struct {
	Preset string      `json:"preset,omitempty"` // the model preset, when the shape came from one
	Model  ModelConfig `json:"model"`
	Data   []Data      `json:"data"`

	Steps    int    `json:"steps"` // optimizer steps
	Batch    int    `json:"batch"` // micro-batch B
	Seq      int    `json:"seq"`   // T
	Accum    int    `json:"accum"` // micro-batches per step
	Seed     uint64 `json:"seed"`
	Order    string `json:"order"`
	InitFrom string `json:"init_from,omitempty"`

	LR          float64 `json:"lr"`
	MinLR       float64 `json:"min_lr"`
	Warmup      int     `json:"warmup"`
	Decay       string  `json:"decay"` // "linear" or "cosine"
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	Clip        float64 `json:"clip"` // global gradient norm; 0: off
	// MatMul is the precision of the matrix products: "" or "fp32", or
	// "bf16" (inputs rounded to bfloat16, float32 accumulation) on a
	// backend with that variant (cuda).
	MatMul string `json:"matmul,omitempty"`
	// Attention is the precision of attention's products, forward and
	// backward: "" or "fp32", or "bf16" (tensor-core products, float32
	// softmax and accumulation) on a backend with that variant (cuda).
	Attention string `json:"attention,omitempty"`
	// Activations is how the activations are stored: "" or "fp32", or
	// "bf16" (and the products' copy of the weights) on a backend that
	// stores bfloat16 (cuda); parameters, gradients and moments stay
	// float32.
	Activations string `json:"activations,omitempty"`

	EST         string         `json:"est"` // preset name, "custom" or "off"
	Schedule    *Schedule      `json:"schedule,omitempty"`
	Sampler     SamplerOptions `json:"sampler"`
	SampleEvery string         `json:"sample_every"` // "step" or "microbatch"

	EvalEvery       int `json:"eval_every"`
	EvalBatches     int `json:"eval_batches"`
	CheckpointEvery int `json:"checkpoint_every"`
	KeepCheckpoints int `json:"keep_checkpoints"`
}

// Defaults fills what is unset with GPT-2's recipe (nanoGPT's and the
// paper's: AdamW 0.9/0.95, weight decay 0.1, clip 1, warmup then linear
// decay to a tenth).
func (c *Config) Defaults() {
	if c.MatMul == "fp32" {
		c.MatMul = "" // the default, spelt one way so that the config's hash is one
	}
	if c.Attention == "fp32" {
		c.Attention = ""
	}
	if c.Activations == "fp32" {
		c.Activations = ""
	}
	set := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Accum == 0 {
		c.Accum = 1
	}
	if c.Order == "" {
		c.Order = shards.Shuffle
	}
	set(&c.LR, 6e-4)
	set(&c.Beta1, 0.9)
	set(&c.Beta2, 0.95)
	set(&c.Eps, 1e-8)
	set(&c.WeightDecay, 0.1)
	set(&c.Clip, 1)
	if c.MinLR == 0 {
		c.MinLR = c.LR / 10
	}
	if c.Decay == "" {
		c.Decay = "linear"
	}
	if c.EST == "" {
		c.EST = "off"
	}
	if c.SampleEvery == "" {
		c.SampleEvery = "step"
	}
	if c.Sampler.LayerMode == "" {
		c.Sampler.LayerMode = "fixed"
	}
	if c.Sampler.Group == 0 {
		c.Sampler.Group = 1
	}
	if c.Sampler.Update == "" {
		c.Sampler.Update = "dense"
	}
	if c.Sampler.Heads == "" {
		c.Sampler.Heads = "groups"
	}
	if c.EvalBatches == 0 {
		c.EvalBatches = 4
	}
	if c.KeepCheckpoints == 0 {
		c.KeepCheckpoints = 2
	}
}

// Check validates a resolved configuration.
func (c *Config) Check() error {
	switch {
	case c.MatMul != "" && c.MatMul != "fp32" && c.MatMul != "bf16":
		return fmt.Errorf("train: matmul %q: fp32 or bf16", c.MatMul)
	case c.Attention != "" && c.Attention != "fp32" && c.Attention != "bf16":
		return fmt.Errorf("train: attention %q: fp32 or bf16", c.Attention)
	case c.Activations != "" && c.Activations != "fp32" && c.Activations != "bf16":
		return fmt.Errorf("train: activations %q: fp32 or bf16", c.Activations)
	case c.Steps <= 0 || c.Batch <= 0 || c.Seq <= 0 || c.Accum <= 0:
		return fmt.Errorf("train: steps %d, batch %d, seq %d and accum %d must be positive", c.Steps, c.Batch, c.Seq, c.Accum)
	case c.Seq > c.Model.MaxT:
		return fmt.Errorf("train: seq %d is longer than the model's %d positions", c.Seq, c.Model.MaxT)
	case len(c.Data) == 0:
		return errors.New("train: no data (--data SET[:weight])")
	case c.Decay != "linear" && c.Decay != "cosine":
		return fmt.Errorf("train: decay %q (want linear or cosine)", c.Decay)
	case c.SampleEvery != "step" && c.SampleEvery != "microbatch":
		return fmt.Errorf("train: sample-every %q (want step or microbatch)", c.SampleEvery)
	case c.Sampler.LayerMode != "fixed" && c.Sampler.LayerMode != "bernoulli":
		return fmt.Errorf("train: layer mode %q (want fixed or bernoulli)", c.Sampler.LayerMode)
	case c.Sampler.Heads != "groups" && c.Sampler.Heads != "within":
		return fmt.Errorf("train: EST heads %q (want groups or within)", c.Sampler.Heads)
	case c.Sampler.Update != "dense" && c.Sampler.Update != "sampled":
		return fmt.Errorf("train: EST update %q (want dense or sampled)", c.Sampler.Update)
	case c.Model.MLP()%c.Sampler.Group != 0:
		return fmt.Errorf("train: neuron group %d does not divide the MLP width %d", c.Sampler.Group, c.Model.MLP())
	}
	if err := c.Model.Check(); err != nil {
		return err
	}
	if c.Schedule != nil {
		return c.Schedule.Check()
	}
	return nil
}

// LRAt is the learning rate of a step (0-based): linear warmup, then linear
// or cosine decay to MinLR at the last step.
func (c *Config) LRAt(step int) float64 {
	if step < c.Warmup {
		return c.LR * float64(step+1) / float64(c.Warmup)
	}
	if c.Steps <= c.Warmup+1 {
		return c.LR
	}
	frac := float64(step-c.Warmup) / float64(c.Steps-1-c.Warmup)
	if c.Decay == "cosine" {
		return c.MinLR + 0.5*(c.LR-c.MinLR)*(1+math.Cos(math.Pi*frac))
	}
	return c.LR + (c.MinLR-c.LR)*frac
}

// StepRecord is one line of metrics.jsonl.
type StepRecord struct {
	Step       int     `json:"step"`
	Stage      int     `json:"stage"`
	Rates      Rates   `json:"rates"`
	Loss       float64 `json:"loss"`
	LR         float64 `json:"lr"`
	GradNorm   float64 `json:"grad_norm"`
	Tokens     int64   `json:"tokens"`
	TokensPerS float64 `json:"tokens_per_s"`
	MS         float64 `json:"ms"`
	// of MS, waiting for the loader's batches
	DataWaitMS float64 `json:"data_wait_ms"`
	FLOPs      FLOPs   `json:"flops"`      // done this step
	FullFLOPs  FLOPs   `json:"full_flops"` // the full model's
	ValLoss    float64 `json:"val_loss,omitempty"`
}

// setPrecisions selects the precision of ops' matrix products and
// attention.
func setPrecisions(ops kernels.Ops, c *Config) error {
	ps, ok := ops.(kernels.PrecisionSetter)
	for _, x := range []struct{ flag, op, p string }{{"matmul", "MatMul", c.MatMul}, {"attention", "Attention", c.Attention}, {"attention", "AttentionBackward", c.Attention}} {
		switch {
		case x.p == "bf16" && !ok:
			return fmt.Errorf("train: %s bf16: the %s backend runs in float32 only (bf16 needs --device cuda)", x.flag, ops.Name())
		case x.p == "bf16":
			if err := ps.SetPrecision(x.op, kernels.BF16); err != nil {
				return fmt.Errorf("train: %s bf16: %w", x.flag, err)
			}
		case ok:
			if err := ps.SetPrecision(x.op, kernels.FP32); err != nil {
				return fmt.Errorf("train: %s fp32: %w", x.flag, err)
			}
		}
	}
	return nil
}

// StageStats summarise one stage in stages.json.
type StageStats struct {
	Stage     int       `json:"stage"`
	Rates     Rates     `json:"rates"`
	Steps     int       `json:"steps"`
	Tokens    int64     `json:"tokens"`
	FLOPs     FLOPs     `json:"flops"`
	FullFLOPs FLOPs     `json:"full_flops"`
	Seconds   float64   `json:"seconds"`
	LastLoss  float64   `json:"last_loss"`
	Layers    Frequency `json:"layers_chosen"`
	Heads     Frequency `json:"heads_chosen"`
	Neurons   Frequency `json:"neurons_chosen"`
	// PeakRSS is the process's peak resident memory in bytes when the
	// stage's last step ended (a process-wide maximum, so it includes the
	// stages before; EST's stages grow, so it is mostly the stage's own).
	PeakRSS int64 `json:"peak_rss_bytes,omitempty"`
	// Device is the kernels backend the stage's last step ran on.
	Device string `json:"device,omitempty"`
}

// Frequency is how often each unit was chosen, over a stage's draws.
type Frequency struct {
	Min  int64   `json:"min"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
}

// evalSeed orders the windows evaluations read, whatever the run's seed.
const evalSeed = 0x6576616c

// runState is checkpointed with the tensors.
type runState struct {
	Step       int          `json:"step"` // steps done
	Loader     shards.State `json:"loader"`
	ConfigHash string       `json:"config_hash"`
	Tokens     int64        `json:"tokens"`
	Stages     []StageStats `json:"stages"`
	Counts     [][3][]int64 `json:"counts"` // per stage: layers, heads, neurons chosen
}

// Options carry what is not part of the run's identity.
type Options struct {
	Resume   bool
	Logger   *slog.Logger
	Progress func(r StepRecord, eta time.Duration) // after each step
}

// Run trains per cfg on ops into the run directory out.
func Run(ctx context.Context, ops kernels.Ops, cfg Config, out string, o Options) (*Summary, error) {
	cfg.Defaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := setPrecisions(ops, &cfg); err != nil {
		return nil, err
	}
	if cfg.Activations == "bf16" { // before the run directory is touched
		if _, err := bf16Store(ops); err != nil {
			return nil, err
		}
	}
	for _, w := range realise(&cfg) { // realised rates into config.json
		log.Warn(w)
	}
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	h := sha256.Sum256(cb)
	hash := hex.EncodeToString(h[:8])
	if err := os.MkdirAll(filepath.Join(out, ckptDir), 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	unlock, err := durable.Lock("train", out)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// data
	var data []shards.Weighted
	for _, d := range cfg.Data {
		s, err := shards.Open(d.Dir, false)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		if v := s.Manifest.Tokenizer.VocabSize; v != cfg.Model.Vocab {
			return nil, fmt.Errorf("train: %s: %w: tokenizer %s has %d ids, the model %d", d.Dir, shards.ErrMismatch, s.Manifest.Tokenizer.Fingerprint, v, cfg.Model.Vocab)
		}
		data = append(data, shards.Weighted{Set: s, Weight: d.Weight})
	}
	model, err := InitModel(ops, cfg.Model, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if err := model.SetBF16Activations(cfg.Activations == "bf16"); err != nil {
		return nil, err
	}
	if cfg.InitFrom != "" {
		if err := LoadHF(model, cfg.InitFrom); err != nil {
			return nil, err
		}
	}
	st := runState{ConfigHash: hash}
	var loaderState *shards.State
	if o.Resume {
		dir, err := latestCheckpoint(out)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(dir, "state.json"))
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("train: %s: %w", dir, err)
		}
		if st.ConfigHash != hash {
			return nil, fmt.Errorf("train: %w: %s was written under another configuration; resume with the run's config.json", shards.ErrMismatch, dir)
		}
		if err := model.base().loadTensors(dir, true); err != nil {
			return nil, err
		}
		loaderState = &st.Loader
		log.Info("resumed", "checkpoint", dir, "step", st.Step)
	} else {
		if err := durable.WriteFile(out, "config.json", append(cb, '\n')); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		os.Remove(filepath.Join(out, "metrics.jsonl"))
		os.Remove(filepath.Join(out, "lineage.jsonl"))
	}
	loader, err := shards.NewLoader(shards.Config{Data: data, B: cfg.Batch, T: cfg.Seq, Order: cfg.Order, Seed: cfg.Seed}, loaderState)
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	sampler := NewSampler(&cfg)
	metrics, err := os.OpenFile(filepath.Join(out, "metrics.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer metrics.Close()
	lineage, err := os.OpenFile(filepath.Join(out, "lineage.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer lineage.Close()
	if o.Resume {
		// Records past the checkpoint belong to steps that will run again.
		if err := truncateRecords(metrics, st.Step); err != nil {
			return nil, err
		}
		if err := truncateRecords(lineage, st.Step); err != nil {
			return nil, err
		}
	}
	B, T := cfg.Batch, cfg.Seq
	ids, targets := make([]int32, B*T), make([]int32, B*T)
	start := time.Now()
	startStep := st.Step
	for st.Step < cfg.Steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step := st.Step
		t0 := time.Now()
		var loss float64
		var flops, full FLOPs
		stage, rates := 0, Rates{1, 1, 1}
		plan := make(Plan, cfg.Accum)
		for micro := range plan {
			if sampler != nil {
				draw := 0
				if cfg.SampleEvery == "microbatch" {
					draw = micro
				}
				plan[micro], stage, rates = sampler.Sample(step, draw)
				if micro == draw { // once per draw
					st.count(stage, rates, plan[micro], &cfg)
				}
			}
		}
		skipped := plan.Skipped(cfg.Model.Layers) // no update at all, as PyTorch skips parameters without a gradient
		model.ZeroGrads(skipped)
		var refs [][]shards.SeqRef
		var wait time.Duration
		for _, sel := range plan {
			w0 := time.Now()
			b, err := loader.Next()
			wait += time.Since(w0)
			if err != nil {
				return nil, err
			}
			for i := 0; i < B; i++ {
				row := b.Tokens[i*(T+1) : (i+1)*(T+1)]
				copy(ids[i*T:(i+1)*T], row[:T])
				copy(targets[i*T:(i+1)*T], row[1:])
			}
			refs = append(refs, append([]shards.SeqRef(nil), b.Refs...))
			st.Loader = b.State
			st.Loader.Used = append([]int64(nil), b.State.Used...)
			b.Release()
			l, err := model.Forward(ids, targets, B, T, sel)
			if err != nil {
				return nil, err
			}
			if err := model.Backward(1 / float32(cfg.Accum)); err != nil {
				return nil, err
			}
			loss += float64(l) / float64(cfg.Accum)
			f, ff := cfg.Model.StepFLOPs(sel, B, T), cfg.Model.StepFLOPs(nil, B, T)
			flops.Blocks += f.Blocks
			flops.All += f.All
			full.Blocks += ff.Blocks
			full.All += ff.All
		}
		norm := model.GradNorm(skipped)
		scale := float32(1)
		if cfg.Clip > 0 && norm > cfg.Clip {
			scale = float32(cfg.Clip / norm)
		}
		lr := cfg.LRAt(step)
		so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: float32(lr), Beta1: float32(cfg.Beta1), Beta2: float32(cfg.Beta2), Eps: float32(cfg.Eps),
			WeightDecay: float32(cfg.WeightDecay), GradScale: scale}, Skipped: skipped} // each parameter counts its own steps
		if cfg.Sampler.Update == "sampled" {
			so.Sampled = plan.Units(cfg.Model.Layers)
		}
		if err := model.Step(so); err != nil {
			return nil, err
		}
		st.Step++
		tokens := int64(B * T * cfg.Accum)
		st.Tokens += tokens
		dt := time.Since(t0)
		rec := StepRecord{Step: step, Stage: stage, Rates: rates, Loss: loss, LR: lr, GradNorm: norm, Tokens: st.Tokens,
			TokensPerS: float64(tokens) / dt.Seconds(), MS: float64(dt.Microseconds()) / 1000, DataWaitMS: float64(wait.Microseconds()) / 1000, FLOPs: flops, FullFLOPs: full}
		s := st.stage(stage, rates)
		s.Steps++
		s.Tokens += tokens
		s.FLOPs.Blocks += flops.Blocks
		s.FLOPs.All += flops.All
		s.FullFLOPs.Blocks += full.Blocks
		s.FullFLOPs.All += full.All
		s.Seconds += dt.Seconds()
		s.LastLoss = loss
		s.PeakRSS = peakRSS()
		s.Device = ops.Name()
		if cfg.EvalEvery > 0 && (st.Step%cfg.EvalEvery == 0 || st.Step == cfg.Steps) {
			v, err := evalLoss(model, data, &cfg)
			if err != nil {
				return nil, err
			}
			rec.ValLoss = v
		}
		if err := appendJSON(metrics, rec); err != nil {
			return nil, err
		}
		if err := appendJSON(lineage, map[string]any{"step": step, "sequences": refs}); err != nil {
			return nil, err
		}
		if o.Progress != nil {
			done := st.Step - startStep
			eta := time.Duration(float64(time.Since(start)) / float64(done) * float64(cfg.Steps-st.Step))
			o.Progress(rec, eta)
		}
		if (cfg.CheckpointEvery > 0 && st.Step%cfg.CheckpointEvery == 0) || st.Step == cfg.Steps {
			if err := checkpoint(out, model, &st, &cfg); err != nil {
				return nil, err
			}
		}
	}
	if err := st.writeStages(out); err != nil {
		return nil, err
	}
	if err := WriteLossPlot(out); err != nil {
		return nil, err
	}
	return st.summary(), nil
}

// count tallies which blocks, heads and neurons a draw chose.
func (st *runState) count(stage int, r Rates, sel *Selection, cfg *Config) {
	st.stage(stage, r)
	L, NH, FF := cfg.Model.Layers, cfg.Model.Heads, cfg.Model.MLP()
	c := &st.Counts[stage]
	if c[0] == nil {
		c[0], c[1], c[2] = make([]int64, L), make([]int64, NH), make([]int64, FF)
	}
	layers := make([]int, 0, L)
	if sel != nil && sel.Layers != nil {
		layers = sel.Layers
	} else {
		for l := 0; l < L; l++ {
			layers = append(layers, l)
		}
	}
	for _, l := range layers {
		c[0][l]++
		if sel != nil && sel.Heads != nil && sel.Heads[l] != nil {
			for _, h := range sel.Heads[l] {
				c[1][h]++
			}
		} else {
			for h := range c[1] {
				c[1][h]++
			}
		}
		if sel != nil && sel.Neurons != nil && sel.Neurons[l] != nil {
			for _, n := range sel.Neurons[l] {
				c[2][n]++
			}
		} else {
			for n := range c[2] {
				c[2][n]++
			}
		}
	}
}

func (st *runState) stage(i int, r Rates) *StageStats {
	for len(st.Stages) <= i {
		st.Stages = append(st.Stages, StageStats{Stage: len(st.Stages)})
		st.Counts = append(st.Counts, [3][]int64{})
	}
	st.Stages[i].Rates = r
	return &st.Stages[i]
}

func frequency(c []int64) Frequency {
	if len(c) == 0 {
		return Frequency{}
	}
	f := Frequency{Min: c[0], Max: c[0]}
	var s int64
	for _, v := range c {
		f.Min, f.Max = min(f.Min, v), max(f.Max, v)
		s += v
	}
	f.Mean = float64(s) / float64(len(c))
	return f
}

func (st *runState) writeStages(out string) error {
	for i := range st.Stages {
		c := st.Counts[i]
		st.Stages[i].Layers, st.Stages[i].Heads, st.Stages[i].Neurons = frequency(c[0]), frequency(c[1]), frequency(c[2])
	}
	b, _ := json.MarshalIndent(st.Stages, "", "  ")
	if err := durable.WriteFile(out, "stages.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// checkpoint writes the tensors and state into checkpoints/step-N through
// a temporary directory, then points checkpoints/latest at it.
func checkpoint(out string, m Model, st *runState, cfg *Config) error {
	name := fmt.Sprintf("step-%08d", st.Step)
	base := filepath.Join(out, ckptDir)
	tmp := filepath.Join(base, durable.TmpPrefix+name)
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := m.base().saveTensors(tmp); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := durable.WriteFile(tmp, "state.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	final := filepath.Join(base, name)
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := durable.WriteFile(base, latestName, []byte(name)); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	pruneCheckpoints(out, cfg.KeepCheckpoints)
	return nil
}

// evalLoss is the mean loss over the first EvalBatches batches of the val
// split (sequential windows), full model.
func evalLoss(m Model, data []shards.Weighted, cfg *Config) (float64, error) {
	return evalSplit(m, data, cfg, shards.Val)
}

// evalSplit is the mean loss of the full model over cfg.EvalBatches
// batches of the split: the same windows at every evaluation, drawn across
// the whole split by a fixed permutation (the first windows in order are one
// corner of the corpus: on the demo's Go sources they scored 3.5 nats above
// the rest).
func evalSplit(m Model, data []shards.Weighted, cfg *Config, split string) (float64, error) {
	l, err := shards.NewLoader(shards.Config{Data: data[:1], Split: split, B: cfg.Batch, T: cfg.Seq, Order: shards.Shuffle, Seed: evalSeed}, nil)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	B, T := cfg.Batch, cfg.Seq
	ids, targets := make([]int32, B*T), make([]int32, B*T)
	var sum float64
	n := min(cfg.EvalBatches, int(l.Windows()[0])/B)
	n = max(n, 1)
	for k := 0; k < n; k++ {
		b, err := l.Next()
		if err != nil {
			return 0, err
		}
		for i := 0; i < B; i++ {
			row := b.Tokens[i*(T+1) : (i+1)*(T+1)]
			copy(ids[i*T:(i+1)*T], row[:T])
			copy(targets[i*T:(i+1)*T], row[1:])
		}
		b.Release()
		v, err := m.Forward(ids, targets, B, T, nil)
		if err != nil {
			return 0, err
		}
		sum += float64(v)
	}
	return sum / float64(n), nil
}

func appendJSON(f *os.File, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// truncateRecords keeps the JSON lines of f whose "step" is below steps.
func truncateRecords(f *os.File, steps int) error {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	keep := 0
	for off := 0; off < len(b); {
		end := off
		for end < len(b) && b[end] != '\n' {
			end++
		}
		var r struct {
			Step int `json:"step"`
		}
		if json.Unmarshal(b[off:end], &r) != nil || r.Step >= steps {
			break
		}
		off = end + 1
		keep = off
	}
	if err := f.Truncate(int64(keep)); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// Summary is what a run did, per stage.
type Summary struct {
	Steps  int
	Tokens int64
	Stages []StageStats
}

func (st *runState) summary() *Summary {
	return &Summary{Steps: st.Step, Tokens: st.Tokens, Stages: st.Stages}
}
