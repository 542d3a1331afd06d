package train

import (
	"fmt"

	"github.com/estkit/estkit/kernels"
)

// BucketReducer is a Reducer that reduces the gradients in buckets while
// the step's last backward pass still runs, as PyTorch's
// DistributedDataParallel does: a block's gradients are final once the
// last micro-batch's backward pass has gone through it, so their
// all-reduce can run behind the backward passes of the blocks before it.
// The Stepper calls Start before the last micro-batch's backward pass, Add
// for each bucket whose gradients are final (the same buckets in the same
// order on every process), and Finish where it would call Reduce;
// Abandon, instead of Finish, when the pass failed.
type BucketReducer interface {
	Reducer
	// Start begins a step's reduction of n gradient values in all.
	Start(ops kernels.Ops, n int)
	// Add queues a bucket of final gradients for reduction.
	Add(grads []kernels.Buf)
	// Finish waits for every bucket and leaves in each what Reduce would.
	Finish() error
	// Abandon ends the step's reduction without waiting for it: the
	// step failed, and a process whose step failed ends the job.
	Abandon()
}

// overlapper is the averager that reduces behind the backward pass
// (Options.OverlapReduce): one bucket a block (GPT-2 124M's are 7.1 M
// values, 28 MB: about PyTorch's default 25 MB bucket), all-reduced in
// order by one goroutine while the Stepper's goroutine computes the
// blocks before it. The buckets are the averager's values in another
// order, reduced by the same sum and scaled by the same 1/R: where the
// library's sum of each value over the processes does not depend on the
// message it travels in (two processes: a+b is b+a in floating point;
// the group of comm_test.go), the result is the averager's bit for bit.
type overlapper struct {
	comm  Comm
	ops   kernels.Ops
	host  []float32     // the step's gradients, bucket after bucket
	n     int           // values the step reduces
	off   int           // values queued so far
	views []kernels.Buf // the buckets' views, in host's order
	work  chan [2]int   // spans of host to all-reduce, in order; nil: no step open
	done  chan error    // the reducing goroutine's result
}

// newOverlapper is the overlapper over comm for a model of layers
// blocks: at most a bucket a block and one for the rest wait at a time.
func newOverlapper(comm Comm, layers int) *overlapper {
	return &overlapper{comm: comm, done: make(chan error, 1), views: make([]kernels.Buf, 0, layers+1)}
}

// Start: see BucketReducer. The goroutine it starts ends at Finish or
// Abandon.
func (a *overlapper) Start(ops kernels.Ops, n int) {
	if cap(a.host) < n {
		a.host = make([]float32, n)
	}
	a.ops, a.n, a.off, a.views = ops, n, 0, a.views[:0]
	a.work = make(chan [2]int, cap(a.views))
	host := a.host[:n]
	go func(work <-chan [2]int, done chan<- error) {
		var err error
		for b := range work {
			if err == nil { // after a failure, drain: the job is ending
				err = a.comm.AllReduceSum(host[b[0]:b[1]])
			}
		}
		done <- err
	}(a.work, a.done)
}

// Add: see BucketReducer. It copies the bucket into the host buffer
// (Download: the device's copy finishes first) and queues it.
func (a *overlapper) Add(grads []kernels.Buf) {
	lo := a.off
	for _, g := range grads {
		if a.off+g.Len() > a.n {
			panic(fmt.Sprintf("train: gradient buckets hold more than the %d values the step reduces", a.n))
		}
		a.ops.Download(a.host[a.off:a.off+g.Len()], g)
		a.off += g.Len()
		a.views = append(a.views, g)
	}
	if a.off > lo {
		a.work <- [2]int{lo, a.off}
	}
}

// Finish: see BucketReducer. The mean is uploaded after the last bucket's
// reduction, as the averager uploads it.
func (a *overlapper) Finish() error {
	close(a.work)
	a.work = nil
	if err := <-a.done; err != nil {
		return fmt.Errorf("train: gradient all-reduce: %w", err)
	}
	if a.off != a.n {
		return fmt.Errorf("train: the gradient buckets held %d values, the step reduces %d", a.off, a.n)
	}
	h := a.host[:a.n]
	inv := 1 / float32(a.comm.Size())
	for i := range h {
		h[i] *= inv
	}
	off := 0
	for _, g := range a.views {
		a.ops.Upload(g, h[off:off+g.Len()])
		off += g.Len()
	}
	return nil
}

// Abandon: see BucketReducer. The goroutine leaves its result in done's
// buffer and ends once the reduction in flight returns.
func (a *overlapper) Abandon() {
	if a.work == nil {
		return
	}
	close(a.work)
	a.work = nil
	a.done = make(chan error, 1)
}

// Reduce reduces grads as one bucket: the averager's reduction.
func (a *overlapper) Reduce(ops kernels.Ops, grads []kernels.Buf) error {
	n := 0
	for _, g := range grads {
		n += g.Len()
	}
	a.Start(ops, n)
	a.Add(grads)
	return a.Finish()
}

// backward runs the backward pass of micro-batch micro of the step's
// plan. Under a BucketReducer the last micro-batch's pass reduces each
// bucket once its gradients are final: first the blocks that micro-batch
// does not run (an earlier one did: a draw per micro-batch), then each
// block it runs as its backward pass ends, last, after the pass, the
// parameters outside the blocks (the embeddings' gradients, which GPT-2's
// tied LM head shares, are the pass's last).
func (s *Stepper) backward(plan Plan, micro int, skipped map[int]bool) error {
	scale := 1 / float32(s.cfg.Accum)
	br, ok := s.Reducer.(BucketReducer)
	if !ok || micro != len(plan)-1 {
		return s.Model.Backward(scale)
	}
	m, L := s.Model, s.cfg.Model.Layers
	n := 0
	for _, g := range m.GradViews(skipped) {
		n += g.Len()
	}
	br.Start(m.Ops(), n)
	runs := make([]bool, L)
	if sel := plan[micro]; sel == nil || sel.Layers == nil {
		for l := range runs {
			runs[l] = true
		}
	} else {
		for _, l := range sel.Layers {
			runs[l] = true
		}
	}
	for l := range L {
		if !skipped[l] && !runs[l] {
			br.Add(m.LayerGradViews(l))
		}
	}
	m.SetBlockDone(func(l int) { br.Add(m.LayerGradViews(l)) })
	err := m.Backward(scale)
	m.SetBlockDone(nil)
	if err != nil {
		br.Abandon()
		return err
	}
	br.Add(m.LayerGradViews(-1))
	return nil
}
