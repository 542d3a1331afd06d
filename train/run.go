package train

import (
	"context"
	"encoding/json"
	"errors"
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
	// of MS, waiting for the loader's batches
	DataWaitMS float64 `json:"data_wait_ms"`
	FLOPs      FLOPs   `json:"flops"`      // done this step
	FullFLOPs  FLOPs   `json:"full_flops"` // the full model's
	ValLoss    float64 `json:"val_loss,omitempty"`
	// the val batches ValLoss averages: eval_batches, or all the val
	// split holds where it holds fewer
	ValBatches int `json:"val_batches,omitempty"`
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
	Settings *Resumable `json:"settings,omitempty"`
	// Arithmetic is how the backend's products summed for this part of
	// the run (kernels.Arithmeticer; "" where it does not say): a resume
	// where it differs warns that the last bits may differ.
	Arithmetic string       `json:"arithmetic,omitempty"`
	Tokens     int64        `json:"tokens"`
	Stages     []StageStats `json:"stages"`
	Counts     [][3][]int64 `json:"counts"` // per stage: layers, heads, neurons chosen
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
	// Resumed, when set, is called once a resume has loaded its
	// checkpoint, with the run's summary up to it, so that running totals
	// built from Progress (the command's block FLOPs saved) cover the
	// whole run and not only the steps this process runs.
	Resumed func(*Summary)
	// MemoryLimit is the memory in bytes the run may use: 0, what the
	// machine has available (checkMemory); below 0, no check.
	MemoryLimit int64
	// Rank is this process's rank among the processes of a data-parallel
	// run, each running a Session (a single process is rank 0). Rank 0
	// alone writes the run directory (config.json, the records,
	// checkpoints), evaluates and reports Progress; the other ranks write
	// nothing and, to resume, only read the latest checkpoint.
	Rank int
	// Comm joins the processes of a data-parallel run (nil: one process):
	// the Stepper averages the gradients over them, and the Session
	// records the whole step's loss and sequences (docs/SCALING.md).
	Comm Comm
	// Reducer, when set, averages the gradients over Comm's processes in
	// place of the host all-reduce over Comm: a device's own (NCCL's on
	// GPUs, kernels/cuda). It is used only when Comm has several processes.
	Reducer Reducer
	// OverlapReduce all-reduces each block's gradients while the last
	// micro-batch's backward pass goes on through the blocks before it
	// (BucketReducer; docs/SCALING.md), instead of all at once after it.
	// The result is the same; whether it is faster depends on the
	// machine. Without a Comm it does nothing.
	OverlapReduce bool
}

// Run trains per cfg on ops into the run directory out: a Session opens
// the run, a Stepper runs its steps, the Session records each and
// checkpoints.
func Run(ctx context.Context, ops kernels.Ops, cfg Config, out string, o Options) (*Summary, error) {
	s, err := OpenSession(ctx, ops, cfg, out, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stepper := s.NewStepper()
	for !s.Done() {
		if err := ctx.Err(); err != nil {
			return nil, s.Interrupted(err) // the steps done so far are checkpointed
		}
		// The first Ctrl-C stops a step between two blocks of its passes,
		// not after it: the step is not recorded (AdamW has not run), the
		// steps before it are checkpointed, and a resume runs it again.
		// An evaluation (in Record) runs to its end, then the loop stops.
		s.Model.SetInterrupt(ctx.Err)
		r, err := stepper.Step(s.Steps(), s.Batches())
		s.Model.SetInterrupt(nil)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
				return nil, s.Interrupted(err)
			}
			return nil, err
		}
		if err := s.Record(r); err != nil {
			return nil, err
		}
	}
	return s.Finish()
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

// frequencies fills in each stage's frequencies from its counts.
func (st *runState) frequencies() {
	for i := range st.Stages {
		c := st.Counts[i]
		st.Stages[i].Layers, st.Stages[i].Heads, st.Stages[i].Neurons = frequency(c[0]), frequency(c[1]), frequency(c[2])
	}
}

// writeStages writes stages.json (after frequencies).
func (st *runState) writeStages(out string) error {
	b, _ := json.MarshalIndent(st.Stages, "", "  ")
	if err := durable.WriteFile(out, "stages.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// evalLoss is the mean loss over EvalBatches batches of the val split
// (or all it holds, where fewer), full model, and how many it averaged.
func evalLoss(m Model, data []shards.Weighted, cfg *Config) (float64, int, error) {
	return evalBatches(m, data, cfg, shards.Val)
}

// evalBatches is the mean loss of the full model over cfg.EvalBatches
// batches of the split: the same windows at every evaluation, drawn across
// the whole split by a fixed permutation (the first windows in order are one
// corner of the corpus: on the demo's Go sources they scored 3.5 nats above
// the rest), and how many batches it averaged.
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
		return fmt.Errorf("train: %s: %w", f.Name(), err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// Summary is what a run did, per stage: the whole run's, over every
// process that trained it.
type Summary struct {
	Steps  int          `json:"steps"`
	Tokens int64        `json:"tokens"`
	Stages []StageStats `json:"stages"`
	// ResumedAt is the steps done before this process resumed the run
	// (0: it started it), so that Steps-ResumedAt are its own.
	ResumedAt int `json:"resumed_at,omitempty"`
}

func (st *runState) summary() *Summary {
	return &Summary{Steps: st.Step, Tokens: st.Tokens, Stages: st.Stages}
}

// BlockFLOPs are the FLOPs the run's steps did in the transformer blocks
// and those the full model would have, summed over its stages.
func (s *Summary) BlockFLOPs() (done, full float64) {
	for _, st := range s.Stages {
		done, full = done+st.FLOPs.Blocks, full+st.FullFLOPs.Blocks
	}
	return done, full
}
