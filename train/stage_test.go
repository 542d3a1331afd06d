package train

import (
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/kernels/cuda"
	"github.com/estkit/estkit/shards"
)

// inputsModel is a Model that keeps a copy of every micro-batch it is
// given.
type inputsModel struct {
	Model
	ids, targets [][]int32
}

func (m *inputsModel) Forward(ids, targets []int32, B, T int, sel *Selection) (float32, error) {
	m.ids, m.targets = append(m.ids, slices.Clone(ids)), append(m.targets, slices.Clone(targets))
	return m.Model.Forward(ids, targets, B, T, sel)
}

// TestStagedBatchesMatchCPU: a Stepper on the CUDA backend, which stages
// its batches (kernels.Stager: page-locked memory and a copy stream; on
// the emulator ordinary memory, in order), gives its model exactly the
// micro-batches, sequences and lineage a Stepper on the CPU backend gives
// over the same loader, trains to the same losses, and records the
// device's wait for data as a part of each step.
func TestStagedBatchesMatchCPU(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	ops := any(gpu).(kernels.Ops)
	if _, ok := ops.(kernels.Stager); !ok {
		t.Fatalf("%s does not stage batches", ops.Name())
	}
	cfg := tinyRun(tokenSet(t))
	cfg.Defaults()
	realise(&cfg)
	cfg.Steps = 3
	set, err := shards.Open(cfg.Data[0].Dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	type run struct {
		m       *inputsModel
		results []*StepResult
	}
	runOn := func(ops kernels.Ops) run {
		m, err := InitModel(ops, cfg.Model, cfg.Seed)
		if err != nil {
			t.Fatal(err)
		}
		l, err := shards.NewLoader(shards.Config{Data: []shards.Weighted{{Set: set, Weight: 1}}, B: cfg.Batch, T: cfg.Seq, Order: string(cfg.Order), Seed: cfg.Seed}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		r := run{m: &inputsModel{Model: m}}
		s := NewStepper(r.m, &cfg)
		for step := range cfg.Steps {
			res, err := s.Step(step, l)
			if err != nil {
				t.Fatal(err)
			}
			r.results = append(r.results, res)
		}
		return r
	}
	want, got := runOn(cpu.New()), runOn(ops)
	if len(got.m.ids) != cfg.Steps*cfg.Accum || !reflect.DeepEqual(got.m.ids, want.m.ids) || !reflect.DeepEqual(got.m.targets, want.m.targets) {
		t.Fatalf("%s was given other micro-batches than the CPU (%d and %d)", ops.Name(), len(got.m.ids), len(want.m.ids))
	}
	for i, r := range got.results {
		w := want.results[i]
		if !reflect.DeepEqual(r.Sequences, w.Sequences) {
			t.Fatalf("step %d: sequences %v, the CPU's %v", i, r.Sequences, w.Sequences)
		}
		if math.Abs(r.Record.Loss-w.Record.Loss) > 1e-5*math.Abs(w.Record.Loss) {
			t.Errorf("step %d: loss %.7f, the CPU's %.7f", i, r.Record.Loss, w.Record.Loss)
		}
		if r.DataWait < 0 || r.DataWait > r.Elapsed || r.Record.DataWaitMS != float64(r.DataWait.Microseconds())/1000 {
			t.Errorf("step %d: waited %v for data (%v ms recorded) in a step of %v", i, r.DataWait, r.Record.DataWaitMS, r.Elapsed)
		}
	}
}
