package train

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/shards"
)

// lineage reads a run's lineage.jsonl: each step's sequences.
func lineage(t *testing.T, run string) [][][]shards.SeqRef {
	t.Helper()
	f, err := os.Open(filepath.Join(run, "lineage.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][][]shards.SeqRef
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Step      int               `json:"step"`
			Sequences [][]shards.SeqRef `json:"sequences"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Step != len(out) {
			t.Fatalf("lineage.jsonl line %d: %s %v", len(out)+1, sc.Bytes(), err)
		}
		out = append(out, l.Sequences)
	}
	return out
}

// deterministic is r without what varies from run to run (timing) or what
// the Session fills in (the run's tokens, evaluations).
func deterministic(r StepRecord) StepRecord {
	r.TokensPerS, r.MS, r.DataWaitMS, r.Tokens, r.ValLoss, r.ValBatches = 0, 0, 0, 0, 0, 0
	return r
}

// handStepper is a Stepper of cfg (resolved) over a model and a loader
// built here, apart from any Session, with the Reducer red.
func handStepper(t *testing.T, cfg *Config, red Reducer) (*Stepper, *shards.Loader) {
	t.Helper()
	m, err := InitModel(cpu.New(), cfg.Model, cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	set, err := shards.Open(cfg.Data[0].Dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	l, err := shards.NewLoader(shards.Config{Data: []shards.Weighted{{Set: set, Weight: 1}}, B: cfg.Batch, T: cfg.Seq, Order: string(cfg.Order), Seed: cfg.Seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	s := NewStepper(m, cfg)
	s.Reducer = red
	return s, l
}

// TestStepperMatchesRun: two Steppers outside train.Run, one over a
// Session of rank 1 and one over a model and loader built by hand, give
// exactly the records and sequences Run wrote (EST's three stages, two
// micro-batches a step), and the rank-1 Session writes nothing yet sums
// up the run as Run did.
func TestStepperMatchesRun(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	run := filepath.Join(t.TempDir(), "run")
	want, err := Run(context.Background(), cpu.New(), cfg, run, Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, seqs := records(t, filepath.Join(run, "metrics.jsonl")), lineage(t, run)

	other := filepath.Join(t.TempDir(), "rank1")
	s, err := OpenSession(context.Background(), cpu.New(), cfg, other, Options{Rank: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := s.NewStepper()
	b, loader := handStepper(t, &s.Config, nil)
	for step := 0; !s.Done(); step++ {
		ra, err := a.Step(s.Steps(), s.Batches())
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.Step(step, loader)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range []*StepResult{ra, rb} {
			if got, w := deterministic(r.Record), deterministic(recs[step]); got != w {
				t.Fatalf("stepper %d, step %d: %+v, Run recorded %+v", i, step, got, w)
			}
			if !reflect.DeepEqual(r.Sequences, seqs[step]) {
				t.Fatalf("stepper %d, step %d: sequences %v, Run recorded %v", i, step, r.Sequences, seqs[step])
			}
		}
		if err := s.Record(ra); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rank 1 wrote %s: %v", other, err)
	}
	strip := func(st []StageStats) []StageStats {
		st = slices.Clone(st)
		for i := range st {
			st[i].Seconds, st[i].PeakRSS = 0, 0
		}
		return st
	}
	if got.Steps != want.Steps || got.Tokens != want.Tokens || !reflect.DeepEqual(strip(got.Stages), strip(want.Stages)) {
		t.Fatalf("rank 1 sums up %+v, Run %+v", got, want)
	}
}

// scaleReducer multiplies the gradients it is given by k and counts the
// values it saw.
type scaleReducer struct {
	k    float32
	seen int
}

func (r *scaleReducer) Reduce(ops kernels.Ops, grads []kernels.Buf) error {
	r.seen = 0
	for _, g := range grads {
		tmp := ops.Alloc(g.Len())
		ops.Axpy(tmp, r.k, g)
		ops.Copy(g, tmp)
		r.seen += g.Len()
	}
	return nil
}

// TestReducerOnGradientPath: the Reducer's gradients are what the norm,
// the clip and AdamW read. Gradients doubled give exactly twice the norm
// and, both clipped, exactly the same step; gradients zeroed give norm 0
// and (no weight decay) no change at all. The Reducer sees exactly the
// parameters of the blocks that ran.
func TestReducerOnGradientPath(t *testing.T) {
	set := tokenSet(t)
	in := tinyRun(set)
	in.Clip, in.WeightDecay = 1e-6, 0 // every step clipped
	s, err := OpenSession(context.Background(), cpu.New(), in, filepath.Join(t.TempDir(), "rank1"), Options{Rank: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Config
	s.Close()
	twice, zero := &scaleReducer{k: 2}, &scaleReducer{k: 0}
	base, lb := handStepper(t, &cfg, nil)
	tw, lt := handStepper(t, &cfg, twice)
	ze, lz := handStepper(t, &cfg, zero)
	fresh, _ := handStepper(t, &cfg, nil)
	B, T := cfg.Batch, cfg.Seq
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(i * 7919 % cfg.Model.Vocab)
	}
	logits := func(m Model) []float32 {
		if _, err := m.Forward(ids, ids, B, T, nil); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, m.Logits().Len())
		cpu.New().Download(out, m.Logits())
		return out
	}
	start := logits(fresh.Model)
	for step := range 3 {
		rb, err := base.Step(step, lb)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := tw.Step(step, lt)
		if err != nil {
			t.Fatal(err)
		}
		rz, err := ze.Step(step, lz)
		if err != nil {
			t.Fatal(err)
		}
		n := rb.Record.GradNorm
		if rt.Record.GradNorm != 2*n || rz.Record.GradNorm != 0 || n <= cfg.Clip || rt.Record.Loss != rb.Record.Loss {
			t.Fatalf("step %d: norms %v (doubled %v, zeroed %v), losses %v and %v", step, n, rt.Record.GradNorm, rz.Record.GradNorm, rb.Record.Loss, rt.Record.Loss)
		}
		if !slices.Equal(logits(tw.Model), logits(base.Model)) {
			t.Fatalf("step %d: doubled and clipped gradients stepped otherwise than the clipped ones", step)
		}
		if !slices.Equal(logits(ze.Model), start) {
			t.Fatalf("step %d: zeroed gradients changed the model", step)
		}
		skipped := Plan(rb.Draws).Skipped(cfg.Model.Layers)
		ran := 0
		for _, e := range base.Model.Table() {
			if e.Layer < 0 || !skipped[e.Layer] {
				ran += e.Size
			}
		}
		if twice.seen != ran || zero.seen != ran || (step == 0 && len(skipped) == 0) {
			t.Fatalf("step %d: the Reducer saw %d and %d values, the blocks that ran (skipped %v) hold %d", step, twice.seen, zero.seen, skipped, ran)
		}
	}
}
