package shards

import (
	"errors"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestPermIsBijection(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 17, 1000, 4097, 65536} {
		p := newPerm(n, 42, 1, 0)
		seen := make([]bool, n)
		for i := range n {
			j := p.at(i)
			if j >= n || seen[j] {
				t.Fatalf("n=%d: %d -> %d repeats or is out of range", n, i, j)
			}
			seen[j] = true
		}
	}
	a, b := newPerm(1000, 1, 0, 0), newPerm(1000, 1, 0, 1)
	same := 0
	for i := range uint64(1000) {
		if a.at(i) == b.at(i) {
			same++
		}
	}
	if same > 20 {
		t.Fatalf("epochs 0 and 1 agree on %d of 1000 positions", same)
	}
}

// twoSets builds two small token shard sets of different text.
func twoSets(t *testing.T) (*Set, *Set) {
	t.Helper()
	var sets []*Set
	for i, skip := range []int{11, 40} {
		res := build(t, []string{docSet(t, []string{"a", "b"}[i], skip, 300<<10)}, Options{ShardTokens: 30_000})
		s, err := Open(res.Dir, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		sets = append(sets, s)
	}
	return sets[0], sets[1]
}

func collect(t *testing.T, l *Loader, n int) []*Batch {
	t.Helper()
	var out []*Batch
	for range n {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func newLoader(t *testing.T, cfg Config, st *State) *Loader {
	t.Helper()
	l, err := NewLoader(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// TestShuffleEpochs: each epoch visits every window exactly once, in a new
// order each epoch, and each sequence holds the stream's tokens.
func TestShuffleEpochs(t *testing.T) {
	a, _ := twoSets(t)
	cfg := Config{Data: []Weighted{{a, 1}}, B: 4, T: 64, Seed: 7}
	l := newLoader(t, cfg, nil)
	W := l.Windows()[0]
	st, _ := a.Stream(Train)
	n := int(2*W/4) + 1
	var order []int64
	want := make([]int32, 65)
	for _, b := range collect(t, l, n) {
		for k, r := range b.Refs {
			order = append(order, r.Window)
			if err := st.Read(want, r.Window*64); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.Tokens[k*65:(k+1)*65], want) {
				t.Fatalf("window %d: tokens differ from the stream", r.Window)
			}
		}
	}
	for e := range 2 {
		ep := slices.Clone(order[int64(e)*W : int64(e+1)*W])
		slices.Sort(ep)
		for i, w := range ep {
			if w != int64(i) {
				t.Fatalf("epoch %d is not a permutation of the %d windows", e, W)
			}
		}
	}
	if slices.Equal(order[:W], order[W:2*W]) {
		t.Fatal("epoch 2 repeats epoch 1's order")
	}
}

// TestSequentialOrder: batch k holds windows kB..kB+B-1 (llm.c's order).
func TestSequentialOrder(t *testing.T) {
	a, _ := twoSets(t)
	l := newLoader(t, Config{Data: []Weighted{{a, 1}}, B: 3, T: 32, Order: Sequential}, nil)
	for k, b := range collect(t, l, 5) {
		for i, r := range b.Refs {
			if r.Window != int64(k*3+i) {
				t.Fatalf("batch %d seq %d: window %d", k, i, r.Window)
			}
		}
	}
}

// TestResumeExact: a loader restored from the state after any batch gives
// exactly the batches an uninterrupted one gives, across epochs and with a
// mixture of two sets.
func TestResumeExact(t *testing.T) {
	a, b := twoSets(t)
	for _, order := range []string{Shuffle, Sequential} {
		cfg := Config{Data: []Weighted{{a, 0.7}, {b, 0.3}}, B: 8, T: 1024, Order: order, Seed: 3, Prefetch: 2}
		ref := collect(t, newLoader(t, cfg, nil), 120)
		l0 := newLoader(t, cfg, nil)
		if l0.Windows()[1]*10/3 > 120*8 || l0.Windows()[0]*10/7 > 120*8 {
			t.Fatalf("set b's epoch (%d windows) is too long to cross in this test", l0.Windows()[1])
		}
		for _, cut := range []int{1, 7, 50, 99} {
			st := ref[cut-1].State
			l := newLoader(t, cfg, &st)
			for k, got := range collect(t, l, len(ref)-cut) {
				want := ref[cut+k]
				if !slices.Equal(got.Tokens, want.Tokens) || !slices.Equal(got.Refs, want.Refs) {
					t.Fatalf("%s: resumed after batch %d, batch %d differs", order, cut, cut+k)
				}
			}
		}
		other := cfg
		other.Seed = 4
		st := ref[0].State
		if _, err := NewLoader(other, &st); !errors.Is(err, ErrMismatch) {
			t.Fatalf("state of another seed accepted: %v", err)
		}
	}
}

// TestRanksPartitionStream: the ranks' streams are disjoint and together
// are the single-process stream.
func TestRanksPartitionStream(t *testing.T) {
	a, b := twoSets(t)
	one := collect(t, newLoader(t, Config{Data: []Weighted{{a, 2}, {b, 1}}, B: 1, T: 64, Seed: 5}, nil), 60)
	const world, B = 3, 2
	for r := range world {
		l := newLoader(t, Config{Data: []Weighted{{a, 2}, {b, 1}}, B: B, T: 64, Seed: 5, Rank: r, World: world}, nil)
		for k, bt := range collect(t, l, 10) {
			for i, ref := range bt.Refs {
				s := (k*B+i)*world + r
				if ref != one[s].Refs[0] || !slices.Equal(bt.Tokens[i*65:(i+1)*65], one[s].Tokens) {
					t.Fatalf("rank %d batch %d seq %d is not global sample %d", r, k, i, s)
				}
			}
		}
	}
}

// TestMixtureWeights: every prefix of the stream holds each set's share of
// samples to within one sample.
func TestMixtureWeights(t *testing.T) {
	a, b := twoSets(t)
	w := []float64{0.693584, 0.306416}
	l := newLoader(t, Config{Data: []Weighted{{a, w[0]}, {b, w[1]}}, B: 1, T: 16, Seed: 1}, nil)
	used := make([]float64, 2)
	for s := range 20000 {
		d := l.pick(int64(s), []int64{int64(used[0]), int64(used[1])})
		used[d]++
		for i := range used {
			if math.Abs(used[i]-w[i]*float64(s+1)) > 1 {
				t.Fatalf("after %d samples set %d has %v, its share is %.2f", s+1, i, used[i], w[i]*float64(s+1))
			}
		}
	}
}

// TestLoaderCloseLeavesNoGoroutine and lineage: spans cover the T+1 tokens.
func TestLoaderCloseAndSpans(t *testing.T) {
	a, _ := twoSets(t)
	before := runtime.NumGoroutine()
	l, err := NewLoader(Config{Data: []Weighted{{a, 1}}, B: 2, T: 256, Prefetch: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bt, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range bt.Refs {
		spans, err := l.Spans(r)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, s := range spans {
			n += s.End - s.Begin
			if s.DocFile == "" || filepath.Base(s.File) != s.File || s.End > s.DocTokens {
				t.Fatalf("span %+v", s)
			}
		}
		if n != 257 {
			t.Fatalf("spans cover %d tokens, want 257", n)
		}
	}
	l.Close()
	if _, err := l.Next(); err == nil {
		t.Fatal("Next after Close")
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Fatalf("%d goroutines after Close, %d before", g, before)
	}
}
