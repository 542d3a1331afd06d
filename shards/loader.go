package shards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/estkit/estkit/internal/store"
)

// Orders of windows.
const (
	Shuffle    = "shuffle"    // a seeded permutation of the windows, a new one each epoch
	Sequential = "sequential" // windows 0, 1, 2, ... (llm.c's order)
)

// Source of a mixture: an opened set and its weight.
type Weighted struct {
	Set    *Set
	Weight float64
}

// Config describes a Loader.
type Config struct {
	Data     []Weighted
	Split    string // Train (default) or Val
	B, T     int    // sequences per batch; a sequence is T+1 tokens
	Order    string // Shuffle (default) or Sequential
	Seed     uint64
	Rank     int // data parallel: this process's rank in [0, World)
	World    int // processes; 0 or 1: one
	Prefetch int // batches prepared ahead; 0: 4
}

// State is where a Loader stands: saved in checkpoints, it makes a new
// Loader continue with exactly the batches the old one would have given.
type State struct {
	Version int     `json:"version"`
	Config  string  `json:"config"` // hash of what the state is only valid for
	Sample  int64   `json:"sample"` // next sample of the global stream
	Used    []int64 `json:"used"`   // samples taken from each set so far
}

const stateVersion = 1

// SeqRef identifies a sequence: window Window of set Set's split.
type SeqRef struct {
	Set    int   `json:"set"`
	Window int64 `json:"window"`
}

// Batch is B sequences of T+1 token ids, row-major.
type Batch struct {
	Tokens []int32
	B, T   int
	Refs   []SeqRef // where each sequence comes from (Loader.Spans resolves it)
	State  State    // the loader's state after this batch
	pool   *sync.Pool
}

// Release hands the batch's memory back to its loader for reuse; the batch
// must not be used after. Optional: an unreleased batch is garbage
// collected, but at hundreds of MB/s of batches the collector then competes
// with the loader for the CPU.
func (b *Batch) Release() {
	if b.pool != nil {
		p := b.pool
		b.pool = nil
		p.Put(b)
	}
}

// Loader yields batches from one or more token shard sets.
type Loader struct {
	cfg     Config
	streams []*Stream
	windows []int64   // windows per set
	weights []float64 // normalised
	hash    string
	remote  bool // a set at a URL: prefetch its files

	state State // after the last batch Next returned

	// prefetching
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	out    chan result
	wg     sync.WaitGroup
	waited time.Duration
	closed bool
	pool   sync.Pool // *Batch
}

type result struct {
	b   *Batch
	err error
}

// NewLoader checks cfg and starts at state (nil: the beginning). A state of
// another configuration is refused.
func NewLoader(cfg Config, state *State) (*Loader, error) {
	if len(cfg.Data) == 0 {
		return nil, errors.New("shards: loader: no data")
	}
	if cfg.Split == "" {
		cfg.Split = Train
	}
	if cfg.Order == "" {
		cfg.Order = Shuffle
	}
	if cfg.World <= 0 {
		cfg.World = 1
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 4
	}
	switch {
	case cfg.B <= 0 || cfg.T <= 0:
		return nil, fmt.Errorf("shards: loader: B %d and T %d must be positive", cfg.B, cfg.T)
	case cfg.Order != Shuffle && cfg.Order != Sequential:
		return nil, fmt.Errorf("shards: loader: order %q (want %s or %s)", cfg.Order, Shuffle, Sequential)
	case cfg.Rank < 0 || cfg.Rank >= cfg.World:
		return nil, fmt.Errorf("shards: loader: rank %d outside [0, %d)", cfg.Rank, cfg.World)
	}
	l := &Loader{cfg: cfg}
	var total float64
	var keys []string
	for i, d := range cfg.Data {
		if !(d.Weight > 0) || math.IsInf(d.Weight, 0) {
			return nil, fmt.Errorf("shards: loader: weight %g of %s is not a positive number", d.Weight, d.Set.Dir)
		}
		st, err := d.Set.Stream(cfg.Split)
		if err != nil {
			return nil, err
		}
		w := (st.Tokens - 1) / int64(cfg.T)
		if w <= 0 {
			return nil, fmt.Errorf("shards: loader: %s's %s split holds %d tokens, fewer than a sequence of T+1 = %d", d.Set.Dir, cfg.Split, st.Tokens, cfg.T+1)
		}
		if i > 0 && d.Set.Manifest.Tokenizer.Fingerprint != cfg.Data[0].Set.Manifest.Tokenizer.Fingerprint {
			return nil, fmt.Errorf("shards: loader: %w: %s was tokenized with %s, %s with %s", ErrMismatch,
				d.Set.Dir, d.Set.Manifest.Tokenizer.Fingerprint, cfg.Data[0].Set.Dir, cfg.Data[0].Set.Manifest.Tokenizer.Fingerprint)
		}
		l.streams = append(l.streams, st)
		l.remote = l.remote || d.Set.remote != nil
		l.windows = append(l.windows, w)
		l.weights = append(l.weights, d.Weight)
		total += d.Weight
		keys = append(keys, fmt.Sprintf("%s:%g", d.Set.Manifest.Key, d.Weight))
	}
	for i := range l.weights {
		l.weights[i] /= total
	}
	b, _ := json.Marshal(struct {
		Sets              []string
		Split, Order      string
		B, T, World, Rank int
		Seed              uint64
		Version           int
	}{keys, cfg.Split, cfg.Order, cfg.B, cfg.T, cfg.World, cfg.Rank, cfg.Seed, stateVersion})
	h := sha256.Sum256(b)
	l.hash = hex.EncodeToString(h[:12])
	l.state = State{Version: stateVersion, Config: l.hash, Used: make([]int64, len(cfg.Data))}
	if state != nil {
		switch {
		case state.Version != stateVersion:
			return nil, fmt.Errorf("shards: loader: %w: state version %d (this estkit writes %d)", ErrMismatch, state.Version, stateVersion)
		case state.Config != l.hash:
			return nil, fmt.Errorf("shards: loader: %w: the saved state belongs to another configuration (data, weights, split, order, B, T, seed or ranks differ)", ErrMismatch)
		case len(state.Used) != len(cfg.Data) || state.Sample < 0:
			return nil, fmt.Errorf("shards: loader: %w: state %+v", ErrCorrupt, *state)
		}
		l.state.Sample = state.Sample
		copy(l.state.Used, state.Used)
	}
	return l, nil
}

// Windows returns the number of windows of each set (an epoch of set i is
// Windows()[i] samples of it).
func (l *Loader) Windows() []int64 { return append([]int64(nil), l.windows...) }

// State is the state after the last batch Next returned.
func (l *Loader) State() State {
	s := l.state
	s.Used = append([]int64(nil), s.Used...)
	return s
}

// pick chooses the set of the next global sample: the one furthest behind
// its share (weight·(sample+1) − used, the lowest index on ties), so that
// every prefix of the stream holds each set's share to within one sample.
func (l *Loader) pick(sample int64, used []int64) int {
	best, bestGap := 0, math.Inf(-1)
	for i, w := range l.weights {
		gap := w*float64(sample+1) - float64(used[i])
		if gap > bestGap {
			best, bestGap = i, gap
		}
	}
	return best
}

// window maps the j-th sample of set d to its window.
func (l *Loader) window(d int, j int64) int64 {
	w := l.windows[d]
	epoch, i := j/w, j%w
	if l.cfg.Order == Sequential {
		return i
	}
	return int64(newPerm(uint64(w), l.cfg.Seed, uint64(d), uint64(epoch)).at(uint64(i)))
}

// build makes the batch after state s and advances s.
func (l *Loader) build(s *State) (*Batch, error) {
	B, T := l.cfg.B, l.cfg.T
	b, _ := l.pool.Get().(*Batch)
	if b == nil {
		b = &Batch{Tokens: make([]int32, B*(T+1)), B: B, T: T, Refs: make([]SeqRef, 0, B)}
	}
	b.Refs = b.Refs[:0]
	b.pool = &l.pool
	for len(b.Refs) < B {
		d := l.pick(s.Sample, s.Used)
		j := s.Used[d]
		s.Used[d]++
		mine := s.Sample%int64(l.cfg.World) == int64(l.cfg.Rank)
		s.Sample++
		if !mine {
			continue
		}
		w := l.window(d, j)
		k := len(b.Refs)
		if err := l.streams[d].Read(b.Tokens[k*(T+1):(k+1)*(T+1)], w*int64(T)); err != nil {
			return nil, err
		}
		b.Refs = append(b.Refs, SeqRef{Set: d, Window: w})
	}
	b.State.Version, b.State.Config, b.State.Sample = s.Version, s.Config, s.Sample
	b.State.Used = append(b.State.Used[:0], s.Used...)
	return b, nil
}

// Next returns the next batch. Batches are prepared ahead by a background
// goroutine; Close stops it.
func (l *Loader) Next() (*Batch, error) {
	if l.closed {
		return nil, errors.New("shards: loader is closed")
	}
	l.once.Do(l.start)
	var r result
	var ok bool
	select {
	case r, ok = <-l.out: // ready: no wait
	default:
		t := time.Now()
		r, ok = <-l.out
		l.waited += time.Since(t)
	}
	if !ok {
		return nil, errors.New("shards: loader is closed")
	}
	if r.err != nil {
		return nil, r.err
	}
	l.state = r.b.State
	l.state.Used = append([]int64(nil), r.b.State.Used...) // the batch's may be reused
	return r.b, nil
}

func (l *Loader) start() {
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.out = make(chan result, l.cfg.Prefetch)
	s := l.State()
	l.wg.Go(func() {
		defer close(l.out)
		for {
			l.prefetch(s)
			b, err := l.build(&s)
			select {
			case l.out <- result{b, err}:
			case <-l.ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
}

// prefetch asks the caches of the sets at URLs for the files that the
// samples after state s will read, in the order they will read them: the
// next Prefetch+4 batches' worth, up to half of each cache's bound (the
// other half holds the files being read). Their downloads run in the
// background; a file already there only becomes the most recently used.
func (l *Loader) prefetch(s State) {
	if !l.remote {
		return
	}
	used := append([]int64(nil), s.Used...)
	asked := map[*store.Cache]int64{}
	seen := map[[2]int]bool{}
	world, T := int64(l.cfg.World), int64(l.cfg.T)
	end := s.Sample + world*int64(l.cfg.B)*int64(l.cfg.Prefetch+4)
	for k := s.Sample; k < end; k++ {
		d := l.pick(k, used)
		j := used[d]
		used[d]++
		st := l.streams[d]
		c := st.set.remote
		if k%world != int64(l.cfg.Rank) || c == nil {
			continue
		}
		full := false
		st.filesOf(l.window(d, j)*T, T+1, func(fi int) {
			f := st.files[fi]
			if full || seen[[2]int{d, fi}] {
				return
			}
			if asked[c] > 0 && asked[c]+f.Size > c.Max()/2 {
				full = true
				return
			}
			seen[[2]int{d, fi}] = true
			asked[c] += f.Size
			c.Prefetch(f.Name, f.Size, f.SHA256)
		})
		if full {
			return
		}
	}
}

// Waited is the total time Next blocked because no batch was ready: zero
// when the loader keeps ahead of its consumer.
func (l *Loader) Waited() time.Duration { return l.waited }

// Close stops the prefetching goroutine and waits for it.
func (l *Loader) Close() {
	l.closed = true
	l.once.Do(func() {}) // never started: nothing to stop
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
	}
}

// Spans resolves a sequence to the documents it was cut from.
func (l *Loader) Spans(r SeqRef) ([]Span, error) {
	if r.Set < 0 || r.Set >= len(l.streams) || r.Window < 0 || r.Window >= l.windows[r.Set] {
		return nil, fmt.Errorf("shards: no sequence %+v", r)
	}
	return l.streams[r.Set].Spans(r.Window*int64(l.cfg.T), int64(l.cfg.T)+1)
}

// Sequence returns the k-th sequence of the (single-process) stream: the
// set and window that sample k of the mixture takes. It replays the
// mixture's choices, O(k) for several sets; inspect uses it.
func (l *Loader) Sequence(k int64) (SeqRef, error) {
	if k < 0 {
		return SeqRef{}, fmt.Errorf("shards: sequence %d", k)
	}
	if len(l.streams) == 1 {
		return SeqRef{Set: 0, Window: l.window(0, k)}, nil
	}
	used := make([]int64, len(l.streams))
	for s := int64(0); ; s++ {
		d := l.pick(s, used)
		if s == k {
			return SeqRef{Set: d, Window: l.window(d, used[d])}, nil
		}
		used[d]++
	}
}

// ReadSequence copies sequence r's T+1 tokens into dst.
func (l *Loader) ReadSequence(r SeqRef, dst []int32) error {
	if r.Set < 0 || r.Set >= len(l.streams) || r.Window < 0 || r.Window >= l.windows[r.Set] || len(dst) != l.cfg.T+1 {
		return fmt.Errorf("shards: no sequence %+v of %d tokens", r, len(dst))
	}
	return l.streams[r.Set].Read(dst, r.Window*int64(l.cfg.T))
}
