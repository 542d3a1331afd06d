package train

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// countingReducer stands for a device's reducer (Options.Reducer): it
// averages over the ranks as the host all-reduce does and counts its
// calls.
type countingReducer struct {
	inner Reducer
	calls int
}

func (r *countingReducer) Reduce(ops kernels.Ops, grads []kernels.Buf) error {
	r.calls++
	return r.inner.Reduce(ops, grads)
}

// TestOptionsReducer: a run of several ranks reduces through
// Options.Reducer when one is given, once per step, in place of the host
// all-reduce (and trains as one process of the global batch); one
// process never calls it.
func TestOptionsReducer(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	cfg.EST, cfg.Schedule = "off", nil
	one := filepath.Join(t.TempDir(), "one")
	c1 := cfg
	c1.Batch *= 2
	alone := &countingReducer{}
	if _, err := Run(context.Background(), cpu.New(), c1, one, Options{MemoryLimit: -1, Reducer: alone}); err != nil {
		t.Fatal(err)
	}
	if alone.calls != 0 {
		t.Fatalf("one process called the Reducer %d times", alone.calls)
	}
	two := filepath.Join(t.TempDir(), "two")
	g := newGroup(2)
	reds := make([]*countingReducer, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		reds[r] = &countingReducer{inner: &averager{comm: member{g, r}}}
		wg.Go(func() {
			_, errs[r] = Run(context.Background(), cpu.New(), cfg, two, Options{Rank: r, Comm: member{g, r}, MemoryLimit: -1, Reducer: reds[r]})
			if errs[r] != nil {
				g.fail(fmt.Errorf("rank %d failed: %w", r, errs[r]))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for r, red := range reds {
		if red.calls != cfg.Steps {
			t.Errorf("rank %d: the Reducer reduced %d steps, want %d", r, red.calls, cfg.Steps)
		}
	}
	r1, r2 := records(t, filepath.Join(one, "metrics.jsonl")), records(t, filepath.Join(two, "metrics.jsonl"))
	for i := range r1 {
		if !closeRel(r1[i].Loss, r2[i].Loss, 1e-5) {
			t.Fatalf("step %d: one process's loss %g, two ranks' %g", i, r1[i].Loss, r2[i].Loss)
		}
	}
}
