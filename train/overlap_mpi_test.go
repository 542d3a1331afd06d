//go:build mpi && cgo

package train

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/estkit/estkit/internal/mpi"
	"github.com/estkit/estkit/kernels/cpu"
)

// TestMain ends MPI where a benchmark started it: mpirun counts a rank
// that exits without MPI_Finalize as failed.
func TestMain(m *testing.M) {
	code := m.Run()
	if n, _ := mpi.Launched(); n > 1 {
		if c, err := mpi.Init(); err == nil {
			c.Finalize()
		}
	}
	os.Exit(code)
}

// BenchmarkMPIReduce, under mpirun (make mpi-bench; every rank must run
// the same iterations, so a fixed -benchtime Nx): the all-reduce of GPT-2
// 124M's gradients (124.4 M float32) alone, and a training step of it
// (B=ESTKIT_BENCH_B, default 1, T=64, one micro-batch) with the gradients
// reduced after the backward pass and behind it (Options.OverlapReduce).
// The step's ms/step less the backward pass's is what the reduction adds.
func BenchmarkMPIReduce(b *testing.B) {
	if n, _ := mpi.Launched(); n < 2 {
		b.Skip("run under mpirun -np 2 or more: make mpi-bench")
	}
	c, err := mpi.Init()
	if err != nil {
		b.Fatal(err)
	}
	cfg := Recipe(Presets["gpt2-124m"])
	cfg.Batch, cfg.Seq, cfg.Accum, cfg.Clip = 1, 64, 1, 1
	if v, err := strconv.Atoi(os.Getenv("ESTKIT_BENCH_B")); err == nil && v > 0 {
		cfg.Batch = v
	}
	m, err := NewModel(cpu.New(), cfg.Model, cfg.Model.InitParams(1))
	if err != nil {
		b.Fatal(err)
	}
	R := float64(c.Size())
	bytes := float64(4 * cfg.Model.NumParams())
	b.Run("allreduce", func(b *testing.B) {
		a := &averager{comm: c}
		grads := m.GradViews(nil)
		if err := a.Reduce(m.Ops(), grads); err != nil { // first touch of the buffers: not timed
			b.Fatal(err)
		}
		if err := c.Barrier(); err != nil { // the ranks start the timed loop together
			b.Fatal(err)
		}
		for b.Loop() {
			if err := a.Reduce(m.Ops(), grads); err != nil {
				b.Fatal(err)
			}
		}
		secs := b.Elapsed().Seconds() / float64(b.N)
		b.SetBytes(int64(bytes))
		b.ReportMetric(secs*1000, "ms/allreduce")
		b.ReportMetric(2*(R-1)/R*bytes/secs/1e9, "busGB/s") // what each rank moves in a ring, per second
	})
	for _, mode := range []struct {
		name    string
		reducer Reducer
	}{
		{"none", nil},
		{"after", &averager{comm: c}},
		{"overlap", newOverlapper(c, cfg.Model.Layers)},
	} {
		b.Run("step/reduce="+mode.name, func(b *testing.B) {
			st := NewStepper(m, &cfg)
			st.Reducer = mode.reducer
			batches := &randBatches{rng: rand.New(rand.NewPCG(1, uint64(c.Rank()))), B: cfg.Batch, T: cfg.Seq, vocab: cfg.Model.Vocab}
			if _, err := st.Step(0, batches); err != nil { // first touch of the activations: not timed
				b.Fatal(err)
			}
			if err := c.Barrier(); err != nil {
				b.Fatal(err)
			}
			step := 1
			for b.Loop() {
				if _, err := st.Step(step, batches); err != nil {
					b.Fatal(err)
				}
				step++
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N)*1000, "ms/step")
		})
	}
}
