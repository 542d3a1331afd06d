package cuda

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// TestStageFeedsOps: batches staged through kernels.Stager (page-locked
// host memory, the copy stream; on the emulator ordinary memory and one
// stream) reach the ops that read index lists exactly as uploaded ones do,
// read from the device's copy (the host slices are overwritten after Wait
// and the results do not change), a prefix included; after the next Wait
// the old slices are uploaded again as the host has them; fill's error is
// returned; Waited sums once.
func TestStageFeedsOps(t *testing.T) {
	o := backend(t)
	st, ok := o.(kernels.Stager)
	if !ok {
		t.Fatalf("%s does not stage batches", o.Name())
	}
	const V, C, B, T = 37, 8, 3, 5
	n := B * T
	rng := rand.New(rand.NewPCG(3, 4))
	randn := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	wte, wpe, logits := o.Alloc(V*C), o.Alloc(T*C), o.Alloc(n*V)
	o.Upload(wte, randn(V*C))
	o.Upload(wpe, randn(T*C))
	o.Upload(logits, randn(n*V))
	embed := func(ids []int32, b int) []float32 {
		out := o.Alloc(b * T * C)
		o.Embed(out, wte, wpe, ids, b, T, C)
		h := make([]float32, b*T*C)
		o.Download(h, out)
		return h
	}
	loss := func(targets []int32) []float32 {
		l := o.Alloc(n)
		o.CrossEntropy(l, nil, logits, targets, n, V, V, 0)
		h := make([]float32, n)
		o.Download(h, l)
		return h
	}
	batch := func() ([]int32, []int32) {
		ids, targets := make([]int32, n), make([]int32, n)
		for i := range ids {
			ids[i], targets[i] = int32(rng.IntN(V)), int32(rng.IntN(V))
		}
		return ids, targets
	}
	stage := func(wantI, wantT []int32) ([]int32, []int32) {
		t.Helper()
		ids, targets, err := st.Stage(n, func(ids, targets []int32) error {
			copy(ids, wantI)
			copy(targets, wantT)
			return nil
		})
		if err != nil || !slices.Equal(ids, wantI) || !slices.Equal(targets, wantT) {
			t.Fatalf("Stage: %v, %v %v", err, ids, targets)
		}
		return ids, targets
	}
	var lastI []int32
	for round := range 5 { // both slots, reused
		wantI, wantT := batch()
		ids, targets := stage(wantI, wantT)
		if err := st.Wait(); err != nil {
			t.Fatal(err)
		}
		clear(ids) // the ops read the device's copy now
		clear(targets)
		if got, want := embed(ids, B), embed(slices.Clone(wantI), B); !slices.Equal(got, want) {
			t.Fatalf("round %d: Embed of the staged ids differs from the uploaded ones'", round)
		}
		if got, want := embed(ids[:T], 1), embed(slices.Clone(wantI[:T]), 1); !slices.Equal(got, want) {
			t.Fatalf("round %d: Embed of a prefix of the staged ids differs", round)
		}
		if got, want := loss(targets), loss(slices.Clone(wantT)); !slices.Equal(got, want) {
			t.Fatalf("round %d: CrossEntropy of the staged targets differs", round)
		}
		copy(ids, wantI)
		lastI = ids
	}
	// staged but not waited for: the ops still read the last Wait's slot
	wantI, wantT := batch()
	stage(wantI, wantT)
	if got, want := embed(lastI, B), embed(slices.Clone(lastI), B); !slices.Equal(got, want) {
		t.Fatal("Embed of the live slot's ids changed with a Stage")
	}
	if err := st.Wait(); err != nil {
		t.Fatal(err)
	}
	clear(lastI) // no longer live: uploaded as the host has it
	if got, want := embed(lastI, B), embed(make([]int32, n), B); !slices.Equal(got, want) {
		t.Fatal("Embed of a released slot's ids read the device's old copy")
	}
	bad := errors.New("loader failed")
	if _, _, err := st.Stage(n, func(ids, targets []int32) error { return bad }); !errors.Is(err, bad) {
		t.Fatalf("fill's error: %v", err)
	}
	if w, err := st.Waited(); err != nil || w < 0 {
		t.Fatalf("Waited: %v, %v", w, err)
	}
	if w, err := st.Waited(); err != nil || w != 0 {
		t.Fatalf("Waited again: %v, %v", w, err)
	}
	if err := o.Err(); err != nil {
		t.Fatal(err)
	}
}
