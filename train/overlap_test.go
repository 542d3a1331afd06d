package train

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// counting is a rank of a group that keeps the length of each of its
// all-reduces.
type counting struct {
	member
	mu   sync.Mutex
	lens []int
}

func (c *counting) AllReduceSum(x []float32) error {
	c.mu.Lock()
	c.lens = append(c.lens, len(x))
	c.mu.Unlock()
	return c.member.AllReduceSum(x)
}

// runOverlap runs cfg on n in-process ranks into run, reducing behind the
// backward pass when overlap is set, and returns rank 0's all-reduce
// lengths.
func runOverlap(t *testing.T, cfg Config, run string, n int, overlap bool) []int {
	t.Helper()
	g := newGroup(n)
	ranks := make([]*counting, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		ranks[r] = &counting{member: member{g, r}}
		wg.Go(func() {
			_, errs[r] = Run(context.Background(), cpu.New(), cfg, run, Options{Rank: r, Comm: ranks[r], OverlapReduce: overlap, MemoryLimit: -1})
			if errs[r] != nil {
				g.fail(fmt.Errorf("rank %d failed: %w", r, errs[r]))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ranks[0].lens
}

// TestOverlapReduceSameBits: reducing in buckets behind the backward pass
// trains bit for bit as reducing after it (the group sums each value over
// the ranks in rank order, whatever the bucket: as MPI over two
// processes), full and under EST with a draw per micro-batch (blocks one
// micro-batch runs and the last does not) and Bernoulli layers; and the
// buckets are what the overlap promises: per step, the blocks the last
// micro-batch runs in backward order, each in its own all-reduce, then
// the parameters outside the blocks.
func TestOverlapReduceSameBits(t *testing.T) {
	set := tokenSet(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"full", func(c *Config) { c.EST, c.Schedule = "off", nil }},
		{"est-sampled-microbatch", func(c *Config) { c.Sampler.Update, c.SampleEvery = "sampled", SampleMicrobatch }},
		{"est-bernoulli-microbatch", func(c *Config) { c.Sampler.LayerMode, c.SampleEvery = LayerModeBernoulli, SampleMicrobatch }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyRun(set)
			cfg.Model.Layers = 3
			tc.edit(&cfg)
			after, behind := filepath.Join(t.TempDir(), "after"), filepath.Join(t.TempDir(), "behind")
			whole := runOverlap(t, cfg, after, 3, false)
			buckets := runOverlap(t, cfg, behind, 3, true)
			r1, r2 := records(t, filepath.Join(after, "metrics.jsonl")), records(t, filepath.Join(behind, "metrics.jsonl"))
			if len(r1) != cfg.Steps || len(r2) != cfg.Steps {
				t.Fatalf("%d and %d steps recorded, want %d", len(r1), len(r2), cfg.Steps)
			}
			for i := range r1 {
				if r1[i].Loss != r2[i].Loss || r1[i].GradNorm != r2[i].GradNorm {
					t.Fatalf("step %d: loss %v and %v, gradient norm %v and %v", i, r1[i].Loss, r2[i].Loss, r1[i].GradNorm, r2[i].GradNorm)
				}
			}
			sameParams(t, after, behind, 0)
			if len(whole) != cfg.Steps || len(buckets) <= len(whole) {
				t.Fatalf("%d all-reduces after the backward passes, %d behind them", len(whole), len(buckets))
			}
			block := blockSize(cfg.Model)
			rest := cfg.Model.NumParams() - cfg.Model.Layers*block
			k := 0
			for step := range cfg.Steps { // each step's buckets: blocks, then the rest
				n := 0
				for ; k < len(buckets) && buckets[k] == block; k++ {
					n += block
				}
				if k == len(buckets) || buckets[k] != rest {
					t.Fatalf("step %d: buckets %v (blocks of %d, then %d)", step, buckets, block, rest)
				}
				if n += buckets[k]; n != whole[step] {
					t.Fatalf("step %d: buckets of %d values in all, the whole reduction %d", step, n, whole[step])
				}
				k++
			}
			if full := slices.Max(whole); full != cfg.Model.NumParams() {
				t.Fatalf("the largest reduction is %d values, the model has %d", full, cfg.Model.NumParams())
			}
		})
	}
}

// blockSize is the number of parameters of one of c's blocks.
func blockSize(c ModelConfig) int {
	n := 0
	for _, e := range c.Table() {
		if e.Layer == 0 {
			n += e.Size
		}
	}
	return n
}
