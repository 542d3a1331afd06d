package train

import (
	"context"
	"errors"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// TestInterruptBetweenBlocks: a pass checks its interrupt between blocks,
// so that the first Ctrl-C stops a step of a large model within a block's
// time, not a whole step's: Forward and Backward end with the interrupt's
// error.
func TestInterruptBetweenBlocks(t *testing.T) {
	cfg := tinyRun("tok")
	m, err := InitModel(cpu.New(), cfg.Model, 1)
	if err != nil {
		t.Fatal(err)
	}
	B, T := 2, 8
	ids, targets := make([]int32, B*T), make([]int32, B*T)
	for i := range ids {
		ids[i], targets[i] = int32(i%50), int32((i+1)%50)
	}
	calls := 0
	m.SetInterrupt(func() error {
		calls++
		if calls > 1 {
			return context.Canceled
		}
		return nil
	})
	if _, err := m.Forward(ids, targets, B, T, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Forward with an interrupt after its first block: %v", err)
	}
	m.SetInterrupt(nil)
	if _, err := m.Forward(ids, targets, B, T, nil); err != nil {
		t.Fatal(err)
	}
	m.SetInterrupt(func() error { return context.Canceled })
	if err := m.Backward(1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Backward with an interrupt: %v", err)
	}
}
