package cuda

import (
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/kernelstest"
)

// backend returns the CUDA backend of this build, or skips the test with
// the reason there is none.
func backend(t *testing.T) kernels.Ops {
	t.Helper()
	o, err := New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	t.Logf("backend: %s", o.Name())
	return o
}

func TestConformance(t *testing.T) {
	kernelstest.Run(t, backend(t), kernelstest.Options{})
}

func TestConformanceBF16(t *testing.T) {
	o := backend(t)
	ps := o.(kernels.PrecisionSetter)
	if err := ps.SetPrecision("MatMul", kernels.BF16); err != nil {
		t.Fatal(err)
	}
	defer ps.SetPrecision("MatMul", kernels.FP32)
	kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16, Only: []string{"MatMul"}})
	if err := ps.SetPrecision("LayerNorm", kernels.BF16); err == nil {
		t.Error("LayerNorm accepted a bf16 variant it does not have")
	}
}
