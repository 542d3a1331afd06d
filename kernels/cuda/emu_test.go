//go:build cudaemu && !cuda

package cuda

import (
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/kernelstest"
)

// TestConformanceGridStride runs the suite with grids of at most two
// blocks, so that every grid-stride loop goes round many times (at full
// size the suite's tensors fit in one pass).
func TestConformanceGridStride(t *testing.T) {
	o, err := New()
	if err != nil {
		t.Fatal(err)
	}
	o.maxGrid = 2
	kernelstest.Run(t, o, kernelstest.Options{})
	kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Stored, BF16Storage: true})
}

// TestConformanceThreadOrders runs the suite with the threads of each
// block run in reverse and in shuffled orders: a kernel whose result
// depends on the order of its threads' accesses between barriers (a race
// on a GPU) fails in one of them.
func TestConformanceThreadOrders(t *testing.T) {
	defer threadOrder(0, 0)
	for _, c := range []struct {
		name string
		mode int
		seed uint64
	}{{"reverse", 1, 0}, {"shuffled", 2, 1}, {"shuffled again", 2, 2}} {
		t.Run(c.name, func(t *testing.T) {
			threadOrder(c.mode, c.seed)
			o, err := New()
			if err != nil {
				t.Fatal(err)
			}
			kernelstest.Run(t, o, kernelstest.Options{})
			// bf16 attention, forward and backward: its warps hand tiles
			// between lanes through shared memory (wmma stores, then the
			// softmax's and the masks' reads)
			for _, op := range []string{"Attention", "AttentionBackward"} {
				if err := o.SetPrecision(op, kernels.BF16); err != nil {
					t.Fatal(err)
				}
			}
			kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Attention, Only: []string{"Attention"}})
			kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Attention, BF16Storage: true, Only: []string{"Attention"}})
		})
	}
}

// TestGridLimits: a launch whose grid is outside CUDA's limits fails with
// an error naming the op and the kernel, before it reaches the device (the
// emulator would run it).
func TestGridLimits(t *testing.T) {
	for _, grid := range [][3]int{{1, 65536, 1}, {1, 1, 65536}, {0, 1, 1}} {
		o, err := New()
		if err != nil {
			t.Fatal(err)
		}
		x := o.Alloc(4)
		o.launch("Fill", "fill", grid, [3]int{32, 1, 1}, buf(x), float32(1), int64(4))
		if err := o.Err(); err == nil || !strings.Contains(err.Error(), "Fill") || !strings.Contains(err.Error(), "grid") {
			t.Fatalf("grid %v: %v", grid, err)
		}
	}
}
