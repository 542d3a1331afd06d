package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestVectorGELUBitExact: where GELU and its gradient run vectorized
// (vec_avx2.go), every element equals the pure-Go loop's bit for bit,
// over ordinary activations, the range where tanh saturates and expNeg's
// cut-off lies, signed zeros, infinities and lengths that leave a tail.
func TestVectorGELUBitExact(t *testing.T) {
	if geluRange == nil {
		t.Skip("no vectorized GELU in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	var xs []float32
	for range 100003 {
		xs = append(xs, float32(r.NormFloat64()*3))
	}
	for i := -4000; i <= 4000; i++ {
		xs = append(xs, float32(i)/100) // tanh's argument crosses −43.7, where e^(−2|u|) is cut off
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 30, -30, 1e4, -1e4, float32(math.Inf(1)), float32(math.Inf(-1)))
	g := make([]float32, len(xs))
	for i := range g {
		g[i] = float32(r.NormFloat64())
	}
	for _, n := range []int{len(xs), len(xs) - 1, 7, 1, 0} {
		x := xs[:n]
		want, got := make([]float32, n), make([]float32, n)
		for i, v := range x {
			u := geluScale * (v + 0.044715*v*v*v)
			want[i] = 0.5 * v * (1 + tanh32(u))
		}
		geluRange(got, x)
		same(t, "GELU", x, got, want)
		dwant, dgot := make([]float32, n), make([]float32, n)
		for i := range dwant {
			dwant[i], dgot[i] = float32(i%5)*0.25, float32(i%5)*0.25 // accumulated into
		}
		for i, v := range x {
			u := geluScale * (v + 0.044715*v*v*v)
			th := tanh32(u)
			du := geluScale * (1 + 3*0.044715*v*v)
			dwant[i] += g[i] * (0.5*(1+th) + 0.5*v*(1-th*th)*du)
		}
		geluBackwardRange(dgot, x, g[:n])
		same(t, "GELUBackward", x, dgot, dwant)
	}
}

func same(t *testing.T, what string, x, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s(%g) at %d of %d: %g (%08x), the Go loop %g (%08x)", what, x[i], i, len(x), got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestVectorExpBitExact: the softmax's vectorized exponentials equal
// expNeg's bit for bit, across its cut-off at −87.33 and with tails.
func TestVectorExpBitExact(t *testing.T) {
	if expShifted == nil {
		t.Skip("no vectorized exponential in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(5, 6))
	var xs []float32
	for range 50001 {
		xs = append(xs, float32(-r.ExpFloat64()*10))
	}
	for i := 0; i <= 20000; i++ {
		xs = append(xs, -float32(i)/200) // 0 to −100, across the cut-off
	}
	xs = append(xs, float32(math.Copysign(0, -1)), float32(math.Inf(-1)), -87.33, -87.329, -87.331)
	for _, m := range []float32{0, 1.5, -3} {
		for _, n := range []int{len(xs), 13, 8, 1, 0} {
			want, got := make([]float32, n), make([]float32, n)
			for i, v := range xs[:n] {
				want[i], got[i] = expNeg(v+m-m), v+m
			}
			expShifted(got, m)
			same(t, "expShifted", xs[:n], got, want)
		}
	}
}
