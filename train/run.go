package train

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

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
	FLOPs      FLOPs   `json:"flops"`      // done this step
	FullFLOPs  FLOPs   `json:"full_flops"` // the full model's
	ValLoss    float64 `json:"val_loss,omitempty"`
}

// setPrecisions selects the precision of ops' matrix products and
// attention.
func setPrecisions(ops kernels.Ops, c *Config) error {
	ps, ok := ops.(kernels.PrecisionSetter)
	for _, x := range []struct{ flag, op, p string }{{"matmul", "MatMul", string(c.MatMul)}, {"attention", "Attention", string(c.Attention)}, {"attention", "AttentionBackward", string(c.Attention)}} {
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
	// Settings are the settings a resume may change as this part of the
	// run had them (config.json keeps those it started with).
	Settings *Resumable   `json:"settings,omitempty"`
	Tokens   int64        `json:"tokens"`
	Stages   []StageStats `json:"stages"`
	Counts   [][3][]int64 `json:"counts"` // per stage: layers, heads, neurons chosen
}

// Options carry what is not part of the run's identity.
type Options struct {
	Resume bool
	// Overwrite replaces the run in the run directory, removed as a
	// whole first; without it (or Resume) a directory holding a run is
	// refused.
	Overwrite bool
	Logger    *slog.Logger
	Progress  func(r StepRecord, eta time.Duration) // after each step
	// MemoryLimit is the memory in bytes the run may use: 0, what the
	// machine has available (checkMemory); below 0, no check.
	MemoryLimit int64
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
	if err := checkMemory(ops, &cfg, o.MemoryLimit); err != nil {
		return nil, err
	}
	if err := checkCheckpointOptions(&cfg); err != nil {
		return nil, err
	}
	cfgFile, hash, err := runIdentity(out, &cfg, o.Resume)
	if err != nil {
		return nil, err
	}
	if _, err := claimRunDir(out, o); err != nil { // before the data is read; again under the lock
		return nil, err
	}
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
	if err := checkValSplit(data, &cfg); err != nil {
		return nil, err
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
	rd, err := openRunDir(out, cfgFile, hash, o)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	st := runState{ConfigHash: hash}
	var loaderState *shards.State
	if o.Resume {
		st = rd.ckpt.state
		if st.Step > cfg.Steps {
			return nil, fmt.Errorf("train: %w: steps %d: %s has done %d steps already", ErrConfig, cfg.Steps, rd.ckpt.dir, st.Step)
		}
		if err := model.LoadTensors(rd.ckpt.dir, true); err != nil {
			return nil, err
		}
		loaderState = &st.Loader
		log.Info("resumed", "checkpoint", rd.ckpt.dir, "step", st.Step)
	}
	settings := resumableOf(&cfg)
	st.Settings = &settings // recorded by the next checkpoint
	loader, err := shards.NewLoader(shards.Config{Data: data, B: cfg.Batch, T: cfg.Seq, Order: string(cfg.Order), Seed: cfg.Seed}, loaderState)
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	sampler := NewSampler(&cfg)
	metrics, lineage := rd.metrics, rd.lineage
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
		for _, sel := range plan {
			b, err := loader.Next()
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
			TokensPerS: float64(tokens) / dt.Seconds(), MS: float64(dt.Microseconds()) / 1000, FLOPs: flops, FullFLOPs: full}
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
		if cfg.evalAt(st.Step) {
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
			if err := rd.checkpoint(model, &st, cfg.KeepCheckpoints); err != nil {
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
	v, _, err := evalBatches(m, data, cfg, split)
	return v, err
}

// evalBatches is evalSplit that also says how many batches it averaged.
func evalBatches(m Model, data []shards.Weighted, cfg *Config, split string) (float64, int, error) {
	l, err := shards.NewLoader(shards.Config{Data: data[:1], Split: split, B: cfg.Batch, T: cfg.Seq, Order: shards.Shuffle, Seed: evalSeed}, nil)
	if err != nil {
		return 0, 0, err
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
			return 0, 0, err
		}
		for i := 0; i < B; i++ {
			row := b.Tokens[i*(T+1) : (i+1)*(T+1)]
			copy(ids[i*T:(i+1)*T], row[:T])
			copy(targets[i*T:(i+1)*T], row[1:])
		}
		b.Release()
		v, err := m.Forward(ids, targets, B, T, nil)
		if err != nil {
			return 0, 0, err
		}
		sum += float64(v)
	}
	return sum / float64(n), n, nil
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

// Summary is what a run did, per stage.
type Summary struct {
	Steps  int
	Tokens int64
	Stages []StageStats
}

func (st *runState) summary() *Summary {
	return &Summary{Steps: st.Step, Tokens: st.Tokens, Stages: st.Stages}
}
