package kernels

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestToBF16 checks the rounding against math/big's round to nearest even
// at bfloat16's 8 significant bits, on a million random float32 bit
// patterns whose values are normal in bfloat16, and the special cases by
// value: ties, overflow to Inf, Inf, NaN, subnormals and −0.
func TestToBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		f := math.Float32frombits(r.Uint32())
		a := math.Abs(float64(f))
		if math.IsNaN(a) || math.IsInf(a, 0) || a < 0x1p-126 || a >= 0x1.ffp127 {
			continue
		}
		want, _ := new(big.Float).SetPrec(8).SetMode(big.ToNearestEven).SetFloat64(float64(f)).Float32()
		if got := RoundBF16(f); got != want {
			t.Fatalf("RoundBF16(%g = %#08x) = %g, want %g", f, math.Float32bits(f), got, want)
		}
	}
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1 + 1.0/256, 0x3f80},                   // a tie: down to even
		{1 + 3.0/256, 0x3f82},                   // a tie: up to even
		{math.MaxFloat32, 0x7f80},               // overflows to +Inf
		{float32(math.Inf(-1)), 0xff80},         // −Inf
		{float32(math.NaN()), 0x7fff},           // the canonical NaN
		{-float32(math.NaN()), 0x7fff},          // whatever its sign
		{math.Float32frombits(0x00018000), 2},   // a subnormal tie: up to even
		{math.Float32frombits(0x00008000), 0},   // half the smallest subnormal: to even, 0
		{float32(math.Copysign(0, -1)), 0x8000}, // −0 keeps its sign
	} {
		if got := ToBF16(c.in); got != c.want {
			t.Errorf("ToBF16(%g = %#08x) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
		}
	}
	if FromBF16(0x3f80) != 1 || FromBF16(0xc000) != -2 {
		t.Error("FromBF16 of 1 or −2")
	}
}
