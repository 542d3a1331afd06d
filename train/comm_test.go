package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// group is n in-process ranks joined by collectives over shared memory:
// the data-parallel logic tested without MPI (internal/mpi's tests and
// cmd/estkit's run the real one under mpirun).
type group struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	in, out []any
	arrived int
	phase   int
	broken  error
}

func newGroup(n int) *group {
	g := &group{n: n, in: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// fail breaks the group: every rank waiting in, or coming to, a collective
// gets err instead of hanging (as MPI_Abort ends a job).
func (g *group) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken == nil {
		g.broken = err
	}
	g.cond.Broadcast()
}

// exchange deposits v and returns every rank's, once all have come.
func (g *group) exchange(rank int, v any) ([]any, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken != nil {
		return nil, g.broken
	}
	ph := g.phase
	g.in[rank] = v
	if g.arrived++; g.arrived == g.n {
		g.out, g.in = g.in, make([]any, g.n)
		g.arrived = 0
		g.phase++
		g.cond.Broadcast()
		return g.out, nil
	}
	for g.phase == ph && g.broken == nil {
		g.cond.Wait()
	}
	if g.phase == ph {
		return nil, g.broken
	}
	return g.out, nil
}

type member struct {
	g    *group
	rank int
}

func (m member) Rank() int { return m.rank }
func (m member) Size() int { return m.g.n }

func (m member) AllReduceSum(x []float32) error {
	all, err := m.g.exchange(m.rank, append([]float32(nil), x...))
	if err != nil {
		return err
	}
	for i := range x {
		var s float32
		for _, v := range all {
			s += v.([]float32)[i]
		}
		x[i] = s
	}
	return nil
}

func (m member) AllGather(send, recv []int64) error {
	all, err := m.g.exchange(m.rank, append([]int64(nil), send...))
	if err != nil {
		return err
	}
	for r, v := range all {
		copy(recv[r*len(send):], v.([]int64))
	}
	return nil
}

func (m member) Bcast(x []int64, root int) error {
	all, err := m.g.exchange(m.rank, append([]int64(nil), x...))
	if err != nil {
		return err
	}
	copy(x, all[root].([]int64))
	return nil
}

// runRanks runs cfg on n in-process ranks into run (rank 0 writes it).
func runRanks(t *testing.T, cfg Config, run string, n int, resume bool) error {
	t.Helper()
	g := newGroup(n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Go(func() {
			_, errs[r] = Run(context.Background(), cpu.New(), cfg, run, Options{Rank: r, Comm: member{g, r}, Resume: resume, MemoryLimit: -1})
			if errs[r] != nil {
				g.fail(fmt.Errorf("rank %d failed: %w", r, errs[r]))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// closeRel fails unless a and b agree within rel, relatively.
func closeRel(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))
}

// sameParams fails unless the latest checkpoints of runs a and b hold
// the same parameters within rel (of the largest magnitude).
func sameParams(t *testing.T, a, b string, rel float64) {
	t.Helper()
	var ps [2][]float32
	for i, run := range []string{a, b} {
		m, _, err := LoadRun(cpu.New(), run)
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = make([]float32, m.Params().Len())
		m.Ops().Download(ps[i], m.Params())
	}
	var scale, worst float64
	for i := range ps[0] {
		scale = math.Max(scale, math.Abs(float64(ps[0][i])))
		worst = math.Max(worst, math.Abs(float64(ps[0][i]-ps[1][i])))
	}
	if worst > rel*scale {
		t.Fatalf("parameters of %s and %s differ by up to %g (of %g)", a, b, worst, scale)
	}
}

// TestDataParallelMatchesOneProcess: two ranks of batch B train exactly
// as one process of batch 2B (loss per step within 1e-5 relative, final
// parameters likewise), full and under EST with its variants; config.json
// records the ranks and the global batch; lineage lists every rank's
// sequences, which together are the one process's.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	set := tokenSet(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"full", func(c *Config) { c.EST, c.Schedule = "off", nil }},
		{"est", func(c *Config) {}},
		{"est-sampled-microbatch", func(c *Config) { c.Sampler.Update, c.SampleEvery = "sampled", SampleMicrobatch }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyRun(set)
			tc.edit(&cfg)
			one, two := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
			c1 := cfg
			c1.Batch *= 2
			if _, err := Run(context.Background(), cpu.New(), c1, one, Options{MemoryLimit: -1}); err != nil {
				t.Fatal(err)
			}
			if err := runRanks(t, cfg, two, 2, false); err != nil {
				t.Fatal(err)
			}
			r1, r2 := records(t, filepath.Join(one, "metrics.jsonl")), records(t, filepath.Join(two, "metrics.jsonl"))
			if len(r1) != cfg.Steps || len(r2) != cfg.Steps {
				t.Fatalf("%d and %d steps recorded, want %d", len(r1), len(r2), cfg.Steps)
			}
			for i := range r1 {
				if !closeRel(r1[i].Loss, r2[i].Loss, 1e-5) || !closeRel(r1[i].GradNorm, r2[i].GradNorm, 1e-4) || r1[i].Tokens != r2[i].Tokens {
					t.Fatalf("step %d: one process %+v, two ranks %+v", i, r1[i], r2[i])
				}
			}
			sameParams(t, one, two, 1e-5)
			got, err := ReadRunConfig(two)
			if err != nil {
				t.Fatal(err)
			}
			if got.Ranks != 2 || got.GlobalBatch != 2*cfg.Batch*cfg.Accum {
				t.Fatalf("config.json: ranks %d, global batch %d", got.Ranks, got.GlobalBatch)
			}
			if base, _ := ReadRunConfig(one); base.Ranks != 0 || base.GlobalBatch != 0 {
				t.Fatalf("one process's config.json: ranks %d, global batch %d", base.Ranks, base.GlobalBatch)
			}
			l1, l2 := lineage(t, one), lineage(t, two)
			for s := range l1 {
				for m := range l1[s] {
					want := map[any]int{}
					for _, q := range l1[s][m] {
						want[q]++
					}
					for _, q := range l2[s][m] {
						want[q]--
					}
					for q, n := range want {
						if n != 0 || len(l2[s][m]) != len(l1[s][m]) {
							t.Fatalf("step %d micro-batch %d: the ranks read %v, one process %v (%v)", s, m, l2[s][m], l1[s][m], q)
						}
					}
				}
			}
		})
	}
}
