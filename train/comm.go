package train

import (
	"fmt"
	"hash/fnv"
	"math"
	"strconv"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

// Comm is the collectives that join the processes of a data-parallel run
// (internal/mpi's Comm over MPI). Every process calls the same ones in
// the same order; each returns once every process has called it.
type Comm interface {
	Rank() int
	Size() int
	// AllReduceSum replaces x by the sum over the processes of their x.
	AllReduceSum(x []float32) error
	// AllGather fills recv with every process's send, in rank order.
	AllGather(send, recv []int64) error
	// Bcast replaces x by root's x.
	Bcast(x []int64, root int) error
}

// world is the number of processes o's run has: 1 without a Comm.
func (o Options) world() int {
	if o.Comm == nil {
		return 1
	}
	return o.Comm.Size()
}

// averager is a data-parallel run's Reducer: the mean over the processes
// of their gradients. Each process's gradients are those of its own
// micro-batches' mean losses (Backward(1/Accum) on the mean over B×T
// tokens), so the mean over R processes is the gradient of the mean loss
// over all R×B×T tokens: what one process with R times the batch gets.
type averager struct {
	comm Comm
	host []float32 // the gradients, gathered into one buffer: one all-reduce a step
}

func (a *averager) Reduce(ops kernels.Ops, grads []kernels.Buf) error {
	n := 0
	for _, g := range grads {
		n += g.Len()
	}
	if cap(a.host) < n {
		a.host = make([]float32, n)
	}
	h := a.host[:n]
	off := 0
	for _, g := range grads {
		ops.Download(h[off:off+g.Len()], g)
		off += g.Len()
	}
	if err := a.comm.AllReduceSum(h); err != nil {
		return fmt.Errorf("train: gradient all-reduce: %w", err)
	}
	inv := 1 / float32(a.comm.Size())
	for i := range h {
		h[i] *= inv
	}
	off = 0
	for _, g := range grads {
		ops.Upload(g, h[off:off+g.Len()])
		off += g.Len()
	}
	return nil
}

// checkSame refuses processes that disagree on v (what, e.g. the config
// hash), naming the first that differs from rank 0.
func checkSame(c Comm, what string, v int64) error {
	all := make([]int64, c.Size())
	if err := c.AllGather([]int64{v}, all); err != nil {
		return fmt.Errorf("train: comparing the ranks' %s: %w", what, err)
	}
	for r, x := range all {
		if x != all[0] {
			return fmt.Errorf("train: %w: rank %d's %s (%x) differs from rank 0's (%x): every rank must run the same estkit on the same configuration", ErrConfig, r, what, x, all[0])
		}
	}
	return nil
}

// hashID is the first 16 hex digits of a hash as an int64, to compare.
func hashID(h string) int64 {
	v, _ := strconv.ParseUint(h[:min(len(h), 16)], 16, 64)
	return int64(v)
}

// planHash fingerprints the subnetworks a step drew (and its step): equal
// on every rank, since the sampler is a pure function of (seed, step,
// draw), unless the ranks' configurations or builds differ.
func planHash(step int, draws []*Selection) int64 {
	h := fnv.New64a()
	put := func(v int64) {
		var b [8]byte
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	put(int64(step))
	for _, d := range draws {
		if d == nil {
			put(-1)
			continue
		}
		put(int64(len(d.Layers)))
		for _, l := range d.Layers {
			put(int64(l))
		}
		for _, units := range [][][]int32{d.Heads, d.Neurons} {
			put(int64(len(units)))
			for _, u := range units {
				put(int64(len(u)))
				for _, x := range u {
					put(int64(x))
				}
			}
		}
		put(int64(math.Float32bits(d.HScale))<<32 | int64(math.Float32bits(d.MScale)))
	}
	return int64(h.Sum64())
}

// combine joins the ranks' views of step r, in one all-gather: it checks
// that every rank drew the same subnetworks (a divergence is an error,
// never a silent wrong run), makes r the whole step's (the mean loss over
// the ranks; each micro-batch's sequences of every rank, in rank order;
// the tokens and FLOPs of all ranks) and returns the loader state of the
// global stream after the step: the last rank's, which has read (or
// skipped) every sample any rank took (docs/SCALING.md, "Resuming").
func (s *Session) combine(r *StepResult) (shards.State, error) {
	c, R := s.opts.Comm, s.opts.world()
	own := s.loader.State()
	B, A, D := s.Config.Batch, s.Config.Accum, len(own.Used)
	// loss, plan hash, loader sample, loader used[D], then A×B (set, window)
	n := 3 + D + 2*A*B
	send := make([]int64, 0, n)
	send = append(send, int64(math.Float64bits(r.Record.Loss)), planHash(r.Record.Step, r.Draws), own.Sample)
	send = append(send, own.Used...)
	if len(r.Sequences) != A {
		return shards.State{}, fmt.Errorf("train: step %d read %d micro-batches, want %d", r.Record.Step, len(r.Sequences), A)
	}
	for _, mb := range r.Sequences {
		if len(mb) != B {
			return shards.State{}, fmt.Errorf("train: step %d: a micro-batch of %d sequences, want %d", r.Record.Step, len(mb), B)
		}
		for _, q := range mb {
			send = append(send, int64(q.Set), q.Window)
		}
	}
	all := make([]int64, R*n)
	if err := c.AllGather(send, all); err != nil {
		return shards.State{}, fmt.Errorf("train: step %d: gathering the ranks' results: %w", r.Record.Step, err)
	}
	var loss float64
	seqs := make([][]shards.SeqRef, A)
	for rank := 0; rank < R; rank++ {
		p := all[rank*n : (rank+1)*n]
		if p[1] != all[1] {
			return shards.State{}, fmt.Errorf("train: step %d: rank %d sampled another subnetwork than rank 0 (plan hash %x, rank 0's %x): the ranks' configurations or estkit builds differ",
				r.Record.Step, rank, uint64(p[1]), uint64(all[1]))
		}
		loss += math.Float64frombits(uint64(p[0]))
		refs := p[3+D:]
		for m := range seqs {
			for i := 0; i < B; i++ {
				k := 2 * (m*B + i)
				seqs[m] = append(seqs[m], shards.SeqRef{Set: int(refs[k]), Window: refs[k+1]})
			}
		}
	}
	last := all[(R-1)*n:]
	global := own
	global.Sample, global.Used = last[2], append([]int64(nil), last[3:3+D]...)
	global.Config = s.globalKey
	f := float64(R)
	r.Record.Loss = loss / f
	r.Sequences = seqs
	r.Tokens *= int64(R)
	r.Record.TokensPerS *= f
	r.Record.FLOPs = FLOPs{Blocks: r.Record.FLOPs.Blocks * f, All: r.Record.FLOPs.All * f}
	r.Record.FullFLOPs = FLOPs{Blocks: r.Record.FullFLOPs.Blocks * f, All: r.Record.FullFLOPs.All * f}
	return global, nil
}
