package cpu

import "math"

// expNeg is e^x for x ≤ 0 in float32 (the shifted logits of a softmax),
// within 2 ulp of the exact value: Cody and Waite's range reduction and a
// degree-6 polynomial. Written here because math.Exp in float64 made the
// classifier's softmax, a fixed cost of every step that EST does not
// shrink, about twice as slow.
func expNeg(x float32) float32 {
	if x < -87.33 {
		return 0 // below float32's normal range: nothing a softmax sum notices
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	n := float32(int32(x*log2e - 0.5)) // round half down for x ≤ 0
	r := x - n*c1 - n*c2
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// tanh32 is tanh in float32 through expNeg, within 2e-7 of the exact
// value (an absolute bound: GELU only uses 1 + tanh and 1 − tanh², which
// it keeps to float32's precision).
func tanh32(u float32) float32 {
	a := u
	if a < 0 {
		a = -a
	}
	e := expNeg(-2 * a)
	t := (1 - e) / (1 + e)
	if u < 0 {
		return -t
	}
	return t
}
