package cpu

import (
	"testing"

	"github.com/estkit/estkit/kernels/kernelstest"
)

func TestConformance(t *testing.T) {
	kernelstest.Run(t, New(), kernelstest.Options{})
}
