// Package ordered is the ordered map over a worker pool that estkit's
// pipelines share (ingest's documents, shard's record batches and their
// tokenization): items read from one or more streams are transformed by a
// pool of workers in parallel and handed to one sink strictly in stream
// order (stream by stream, each stream's items in the order read), so that
// the output does not depend on scheduling.
//
// Cancellation is the part each hand-written copy got subtly wrong in its
// own way, so it lives here once: the first error (a reader's, the sink's,
// or the parent context's cancellation) cancels the context every reader
// and emit watches; Run returns only after every goroutine it started has
// ended; every result a worker produced that the sink never took is handed
// to Drop, so that the caller can release what it holds.
package ordered

import (
	"context"
	"sync"
)

// Config describes one run. Read, Work and Sink are required.
type Config[T, R any] struct {
	// Streams is the number of input streams; the sink takes them in
	// order 0, 1, ….
	Streams int
	// Readers is how many streams are read at once (at least 1).
	Readers int
	// Workers is the size of the worker pool (at least 1).
	Workers int
	// Depth is how many items of one stream may be in flight ahead of the
	// sink (at least 1): it bounds memory.
	Depth int
	// Queue is the capacity of the queue from readers to workers.
	Queue int
	// Read reads stream i, calling emit for each item in order. emit
	// returns an error only once the run is cancelled; the item was then
	// not taken, and Read returns (what it returns is not the run's error
	// unless it is the first one).
	Read func(ctx context.Context, stream int, emit func(T) error) error
	// Work transforms an item on worker w (0 ≤ w < Workers: per-worker
	// state lives in the caller's slice indexed by w). It runs for every
	// item emit took, cancelled or not: a Work that is slow should check
	// ctx and return a cheap result when it is done.
	Work func(ctx context.Context, w int, item T) R
	// Sink takes the results in order; its error ends the run.
	Sink func(stream int, r R) error
	// Drop, optional, gets every result the sink did not take (the run
	// failed or was cancelled), once each.
	Drop func(R)
}

type slot[R any] struct {
	done  chan struct{}
	r     R
	taken bool // the work item reached a worker: r is a result
}

type job[T, R any] struct {
	item T
	s    *slot[R]
}

// Run runs the pipeline until every stream is read and sunk, or until the
// first error, which it returns.
func Run[T, R any](parent context.Context, c Config[T, R]) error {
	readers, workers, depth := max(1, c.Readers), max(1, c.Workers), max(1, c.Depth)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
	)
	fail := func(err error) { // the first error is the run's; it stops everything
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		cancel()
	}
	work := make(chan job[T, R], max(0, c.Queue))
	queues := make([]chan *slot[R], c.Streams)
	for i := range queues {
		queues[i] = make(chan *slot[R], depth)
	}
	var all sync.WaitGroup
	for w := range workers {
		all.Go(func() {
			for j := range work {
				j.s.r = c.Work(ctx, w, j.item)
				j.s.taken = true
				close(j.s.done)
			}
		})
	}
	all.Go(func() { // the readers, at most `readers` at once; then the workers' end
		var running sync.WaitGroup
		defer close(work)
		defer running.Wait()
		sem := make(chan struct{}, readers)
		for i := range c.Streams {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, q := range queues[i:] { // never read: nothing will come
					close(q)
				}
				return
			}
			running.Go(func() {
				defer func() { <-sem }()
				defer close(queues[i])
				emit := func(item T) error {
					s := &slot[R]{done: make(chan struct{})}
					select {
					case queues[i] <- s:
					case <-ctx.Done():
						return ctx.Err()
					}
					select {
					case work <- job[T, R]{item, s}:
						return nil
					case <-ctx.Done():
						close(s.done) // queued, never worked: the sink skips it
						return ctx.Err()
					}
				}
				if err := c.Read(ctx, i, emit); err != nil {
					fail(err)
				}
			})
		}
	})
	all.Go(func() { // the sink: in order; after a failure it drains, dropping
		failed := false
		for i, q := range queues {
			for s := range q {
				<-s.done
				if !s.taken {
					continue
				}
				if !failed && ctx.Err() != nil {
					failed = true
				}
				if !failed {
					err := c.Sink(i, s.r)
					if err == nil {
						continue
					}
					failed = true
					fail(err)
				}
				if c.Drop != nil {
					c.Drop(s.r)
				}
			}
		}
	})
	all.Wait()
	if err := parent.Err(); err != nil {
		// Cancelled: whatever a reader made of its interrupted read, and
		// even after the last item, the run's outcome is the cancellation.
		return err
	}
	return first
}
