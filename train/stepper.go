package train

import (
	"time"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

// Batches gives a step its micro-batches, in order: a shards.Loader.
type Batches interface {
	Next() (*shards.Batch, error)
}

// Reducer combines the gradients of the processes of a data-parallel run.
// The Stepper calls Reduce once per step, after every micro-batch's
// backward pass has summed its gradients and before anything reads them:
// the norm, the clip and AdamW all see what Reduce leaves. grads are views
// of the gradient buffer that together hold every parameter the step
// trained (the skipped blocks' are not among them), in offset order, the
// same on every process since the sampler is a pure function of (seed,
// step, draw). An all-reduce that averages them plugs in here; on one
// process there is nothing to combine and the Stepper's Reducer is nil.
type Reducer interface {
	Reduce(ops kernels.Ops, grads []kernels.Buf) error
}

// Stepper runs the optimizer steps of a model: it plans the step's
// subnetworks, runs the micro-batches forward and backward, reduces the
// gradients, clips them and applies AdamW. It reads batches and writes
// nothing but the model: records and checkpoints are the Session's.
type Stepper struct {
	Model   Model
	Reducer Reducer // nil: one process

	cfg          Config
	sampler      *Sampler // nil: no EST, the full model every step
	ids, targets []int32  // a micro-batch's inputs and targets [B×T]
}

// NewStepper is a Stepper of m under cfg (resolved: Session.Config).
func NewStepper(m Model, cfg *Config) *Stepper {
	n := cfg.Batch * cfg.Seq
	return &Stepper{Model: m, cfg: *cfg, sampler: NewSampler(cfg), ids: make([]int32, n), targets: make([]int32, n)}
}

// StepResult is what one step did: its line of metrics.jsonl and what the
// Session keeps beside it.
type StepResult struct {
	// Record is the step's metrics; Tokens and ValLoss are the Session's
	// to fill in (the run's total, an evaluation).
	Record    StepRecord
	Tokens    int64             // trained in this step
	Elapsed   time.Duration     // the step's time, as Record.MS has it
	DataWait  time.Duration     // of Elapsed, waiting for the batches (Record.DataWaitMS)
	Draws     []*Selection      // the sampler's draws, for stages.json (none without EST)
	Sequences [][]shards.SeqRef // each micro-batch's sequences, for lineage.jsonl
}

// Step runs step number step on the micro-batches batches gives.
func (s *Stepper) Step(step int, batches Batches) (*StepResult, error) {
	t0 := time.Now()
	c := &s.cfg
	B, T := c.Batch, c.Seq
	r := &StepResult{}
	plan, stage, rates := s.plan(step, r)
	skipped := plan.Skipped(c.Model.Layers) // no update at all, as PyTorch skips parameters without a gradient
	s.Model.ZeroGrads(skipped)
	var loss float64
	var flops, full FLOPs
	for micro, sel := range plan {
		if err := s.next(batches, r); err != nil {
			return nil, err
		}
		l, err := s.Model.Forward(s.ids, s.targets, B, T, sel)
		if err != nil {
			return nil, err
		}
		if err := s.backward(plan, micro, skipped); err != nil { // overlap.go: may reduce behind the last pass
			return nil, err
		}
		loss += float64(l) / float64(c.Accum)
		flops = flops.plus(c.Model.StepFLOPs(sel, B, T))
		full = full.plus(c.Model.StepFLOPs(nil, B, T))
	}
	if s.Reducer != nil { // every micro-batch's gradients are in: combine them before the norm reads them
		if br, ok := s.Reducer.(BucketReducer); ok { // started by the last backward pass
			if err := br.Finish(); err != nil {
				return nil, err
			}
		} else if err := s.Reducer.Reduce(s.Model.Ops(), s.Model.GradViews(skipped)); err != nil {
			return nil, err
		}
	}
	norm := s.Model.GradNorm(skipped)
	lr := c.LRAt(step)
	if err := s.Model.Step(s.adamW(lr, norm, plan, skipped)); err != nil {
		return nil, err
	}
	if st, ok := s.Model.Ops().(kernels.Stager); ok { // the device's own wait for its batches
		w, err := st.Waited()
		if err != nil {
			return nil, err
		}
		r.DataWait = w
	}
	r.Tokens = int64(B * T * c.Accum)
	r.Elapsed = time.Since(t0)
	r.Record = StepRecord{Step: step, Stage: stage, Rates: rates, Loss: loss, LR: lr, GradNorm: norm,
		TokensPerS: float64(r.Tokens) / r.Elapsed.Seconds(), MS: float64(r.Elapsed.Microseconds()) / 1000,
		DataWaitMS: float64(r.DataWait.Microseconds()) / 1000, FLOPs: flops, FullFLOPs: full}
	return r, nil
}

// plan draws the subnetworks of the step's micro-batches from the pure
// sampler, one draw per step or per micro-batch (SampleEvery), and lists
// the draws in r; without EST every micro-batch runs the full model (nil).
func (s *Stepper) plan(step int, r *StepResult) (plan Plan, stage int, rates Rates) {
	plan, rates = make(Plan, s.cfg.Accum), Rates{1, 1, 1}
	if s.sampler == nil {
		return plan, stage, rates
	}
	for micro := range plan {
		draw := 0
		if s.cfg.SampleEvery == SampleMicrobatch {
			draw = micro
		}
		plan[micro], stage, rates = s.sampler.Sample(step, draw)
		if micro == draw { // once per draw
			r.Draws = append(r.Draws, plan[micro])
		}
	}
	return plan, stage, rates
}

// next reads the next micro-batch into ids and targets (each sequence's
// first T tokens, and its last T) and keeps where its sequences came from.
// On a backend that stages batches (kernels.Stager: a GPU) they are its
// page-locked slices, copied to the device behind the compute in flight,
// and the step's wait is the device's (Waited, at the step's end).
func (s *Stepper) next(batches Batches, r *StepResult) error {
	st, ok := s.Model.Ops().(kernels.Stager)
	if !ok {
		w0 := time.Now()
		b, err := batches.Next()
		r.DataWait += time.Since(w0)
		if err != nil {
			return err
		}
		s.take(b, r, s.ids, s.targets)
		return nil
	}
	ids, targets, err := st.Stage(len(s.ids), func(ids, targets []int32) error {
		b, err := batches.Next()
		if err != nil {
			return err
		}
		s.take(b, r, ids, targets)
		return nil
	})
	if err != nil {
		return err
	}
	s.ids, s.targets = ids, targets
	return st.Wait()
}

// take copies batch b into ids and targets and releases it.
func (s *Stepper) take(b *shards.Batch, r *StepResult, ids, targets []int32) {
	B, T := s.cfg.Batch, s.cfg.Seq
	for i := 0; i < B; i++ {
		row := b.Tokens[i*(T+1) : (i+1)*(T+1)]
		copy(ids[i*T:(i+1)*T], row[:T])
		copy(targets[i*T:(i+1)*T], row[1:])
	}
	r.Sequences = append(r.Sequences, append([]shards.SeqRef(nil), b.Refs...))
	b.Release()
}

// adamW is the step's optimizer settings at learning rate lr: the clip's
// scale for the gradients' norm (folded into AdamW's gradient scale, so
// that the gradients are read once), the skipped blocks, and under EST's
// "sampled" update the heads and neurons that step. Each parameter counts
// its own steps (StepOptions).
func (s *Stepper) adamW(lr, norm float64, plan Plan, skipped map[int]bool) StepOptions {
	c := &s.cfg
	scale := float32(1)
	if c.Clip > 0 && norm > c.Clip {
		scale = float32(c.Clip / norm)
	}
	so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: float32(lr), Beta1: float32(c.Beta1), Beta2: float32(c.Beta2), Eps: float32(c.Eps),
		WeightDecay: float32(c.WeightDecay), GradScale: scale}, Skipped: skipped}
	if c.Sampler.Update == "sampled" {
		so.Sampled = plan.Units(c.Model.Layers)
	}
	return so
}

// plus is f and g summed, blocks and all.
func (f FLOPs) plus(g FLOPs) FLOPs {
	return FLOPs{Blocks: f.Blocks + g.Blocks, All: f.All + g.All}
}
