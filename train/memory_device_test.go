package train

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cuda"
	"github.com/estkit/estkit/shards"
)

// randBatches gives batches of B sequences of T+1 tokens drawn from seed
// below vocab, without end.
type randBatches struct {
	rng         *rand.Rand
	B, T, vocab int
}

func (r *randBatches) Next() (*shards.Batch, error) {
	b := &shards.Batch{B: r.B, T: r.T, Tokens: make([]int32, r.B*(r.T+1)), Refs: make([]shards.SeqRef, r.B)}
	for i := range b.Tokens {
		b.Tokens[i] = int32(r.rng.IntN(r.vocab))
	}
	return b, nil
}

// The margins by which EstimateMemory's device part may exceed what the
// CUDA backend allocates: it rounds up (the gathered weights of EST's
// sampled layers at the full layers' size, the backward scratch at its
// widest), never down. Of the whole, at most 10%; of the activations and
// scratch alone (a few percent of the whole at these sizes; its share
// grows with B×T), at most 50%.
const (
	deviceMemoryMargin      = 1.10
	deviceActivationsMargin = 1.50
)

// TestDeviceMemoryEstimate: the device memory EstimateMemory counts for a
// run (parameters, gradients, moments, activations at the micro-batch and
// sequence length, attention's state, the bf16 weight copy) covers what
// the CUDA backend allocates (its own tally, on a GPU or on the emulator)
// for an EST step with sampled heads and neurons (gathered weights) and a
// full step, of GPT-2 and of Llama (grouped-query heads), with float32 and
// with bfloat16 activations, within the margins above.
func TestDeviceMemoryEstimate(t *testing.T) {
	for _, c := range []struct {
		preset string
		acts   Precision
	}{{"gpt2-tiny", FP32}, {"gpt2-tiny", BF16}, {"llama-tiny", FP32}, {"llama-tiny", BF16}} {
		name := "fp32"
		if c.acts == BF16 {
			name = "bf16"
		}
		t.Run(c.preset+"/"+name, func(t *testing.T) {
			gpu, err := cuda.New()
			if err != nil {
				t.Skipf("no CUDA backend: %v", err)
			}
			ops := any(gpu).(kernels.Ops) // *cuda.Ops, or kernels.Ops in a build without CUDA
			tally, ok := ops.(interface{ Allocated() int64 })
			if !ok {
				t.Skip("the CUDA backend keeps no tally")
			}
			cfg := Recipe(Presets[c.preset])
			// small enough for the emulator (its products run a thread at a
			// time): the parameters dominate, so they and the activations
			// are checked apart
			cfg.Batch, cfg.Seq, cfg.Accum, cfg.Steps, cfg.Activations = 2, 32, 1, 2, c.acts
			sched, err := ParseSchedule("1,2", "0.5:0.5:1,1:1:1")
			if err != nil {
				t.Fatal(err)
			}
			cfg.EST, cfg.Schedule = "custom", &sched
			if c.acts == BF16 {
				cfg.MatMul, cfg.Attention = BF16, BF16
			}
			if err := setPrecisions(ops, &cfg); err != nil {
				t.Fatal(err)
			}
			m, err := InitModel(ops, cfg.Model, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetBF16Activations(c.acts == BF16); err != nil {
				t.Fatal(err)
			}
			state := float64(tally.Allocated())
			s := NewStepper(m, &cfg)
			b := &randBatches{rng: rand.New(rand.NewPCG(1, 2)), B: cfg.Batch, T: cfg.Seq, vocab: cfg.Model.Vocab}
			for step := range cfg.Steps {
				if _, err := s.Step(step, b); err != nil {
					t.Fatal(err)
				}
			}
			used := float64(tally.Allocated())
			e := EstimateMemory(ops, &cfg)
			t.Logf("%s, %s activations, B=%d, T=%d: estimated %s on the device, the backend allocated %s (%.3f×); activations and scratch %s of %s (%.3f×)",
				c.preset, name, cfg.Batch, cfg.Seq, bytesText(e.Device()), bytesText(used), e.Device()/used,
				bytesText(e.Activations), bytesText(used-state), e.Activations/(used-state))
			for _, x := range []struct {
				what         string
				est, used, m float64
			}{{"the whole", e.Device(), used, deviceMemoryMargin},
				{"parameters, gradients, moments and bf16 copy", e.Params + e.Grads + e.Moments + e.BF16Weights, state, 1},
				{"activations and scratch", e.Activations, used - state, deviceActivationsMargin}} {
				if x.est < x.used || x.est > x.m*x.used {
					t.Errorf("%s: estimate %.0f bytes, allocated %.0f: outside [1, %g]× (%+v)", x.what, x.est, x.used, x.m, e)
				}
			}
		})
	}
}

// TestDeviceMemoryRefused: a run that does not fit the card's free memory
// (the emulator's, set by ESTKIT_CUDAEMU_FREE_MEMORY) is refused before
// its run directory is written, naming the device's estimate, the free
// memory and the largest micro-batch that fits; that micro-batch is
// accepted, and a card with room for none says so.
func TestDeviceMemoryRefused(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	ops := any(gpu).(kernels.Ops)
	if _, ok := ops.(MemoryReporter); !ok {
		t.Fatalf("%s does not report its free memory", ops.Name())
	}
	if !strings.Contains(ops.Name(), "emulated") {
		t.Skip("the free memory of a real card cannot be set")
	}
	for _, acts := range []Precision{FP32, BF16} {
		cfg := Recipe(Presets["gpt2-124m"])
		cfg.Data = []Data{{Dir: filepath.Join(t.TempDir(), "no-data"), Weight: 1}}
		cfg.Batch, cfg.Seq, cfg.Activations = 16, 1024, acts
		e := EstimateMemory(ops, &cfg)
		free := int64(e.Device() - 4.5*e.PerSequence) // 11 sequences fit; the host copy is not the card's
		t.Setenv("ESTKIT_CUDAEMU_FREE_MEMORY", strconv.FormatInt(free, 10))
		out := filepath.Join(t.TempDir(), "run")
		_, err := OpenSession(context.Background(), ops, cfg, out, Options{})
		want := fmt.Sprintf("needs about %s", bytesText(e.Device()))
		if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), bytesText(float64(free))+" free on the cuda") ||
			!strings.Contains(err.Error(), "largest micro-batch that fits: --batch 11 ") || (acts == BF16) != strings.Contains(err.Error(), "bf16 weight copy") {
			t.Fatalf("activations %q: %v", acts, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused run wrote %s: %v", out, err)
		}
		cfg.Batch = 11
		if err := checkMemory(ops, &cfg, 0); err != nil {
			t.Fatalf("the micro-batch named does not fit: %v", err)
		}
		t.Setenv("ESTKIT_CUDAEMU_FREE_MEMORY", strconv.FormatInt(int64(e.Params), 10))
		if err := checkMemory(ops, &cfg, 0); !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "fits: none") {
			t.Fatalf("a card that holds only the parameters: %v", err)
		}
	}
	t.Setenv("ESTKIT_CUDAEMU_FREE_MEMORY", "lots")
	if err := checkMemory(ops, &Config{Model: Presets["gpt2-tiny"], Batching: Batching{Batch: 1, Seq: 8}}, 0); err == nil || !strings.Contains(err.Error(), "ESTKIT_CUDAEMU_FREE_MEMORY") {
		t.Fatalf("an unreadable free memory: %v", err)
	}
}
