package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkAttention times attention's forward and backward passes at
// GPT-2 124M's heads (12 of 64) over 4 sequences, at the step
// benchmarks' lengths: one layer's worth of what BenchmarkStepOps sums
// over twelve.
func BenchmarkAttention(b *testing.B) {
	const B, NH, HS = 4, 12, 64
	for _, T := range []int{64, 1024} {
		o := New()
		r := rand.New(rand.NewPCG(uint64(T), 1))
		W := 3 * NH * HS
		qkv, dout := normals(r, B*T*W), normals(r, B*T*NH*HS)
		out, att, dqkv := make([]float32, B*T*NH*HS), make([]float32, o.AttentionState(B, NH, T)), make([]float32, B*T*W)
		b.Run(fmt.Sprintf("T=%d/forward", T), func(b *testing.B) {
			for b.Loop() {
				o.Attention(Buf(out), Buf(att), Buf(qkv), B, T, NH, NH, HS)
			}
		})
		b.Run(fmt.Sprintf("T=%d/backward", T), func(b *testing.B) {
			o.Attention(Buf(out), Buf(att), Buf(qkv), B, T, NH, NH, HS)
			for b.Loop() {
				o.AttentionBackward(Buf(dqkv), Buf(dout), nil, Buf(qkv), Buf(att), B, T, NH, NH, HS)
			}
		})
	}
}
