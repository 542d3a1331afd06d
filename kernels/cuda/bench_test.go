package cuda

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// BenchmarkOps times every op on a GPU at the shapes of a GPT-2 124M step
// (B=8, T=1024) and of TinyLlama's layers (B=2, T=2048), and reports the
// rate each achieves: GB/s of memory traffic (the bytes an op must read
// and write at least) for the memory-bound ops, TFLOP/s for the products
// and attention. The device check prints them next to the card's copy
// bandwidth and bf16 matrix rate measured by PyTorch in the same run.
// Skipped without a GPU (the emulator would take hours at these sizes).
func BenchmarkOps(b *testing.B) {
	ob, err := New()
	if err != nil {
		b.Skipf("no CUDA backend: %v", err)
	}
	var o kernels.Ops = ob // *Ops, or kernels.Ops in a build without CUDA
	if strings.Contains(o.Name(), "emulated") {
		b.Skip("emulated backend: no GPU to time")
	}
	syncer := o.(interface{ Sync() error })
	r := rand.New(rand.NewPCG(1, 2))
	buf := func(n int) kernels.Buf { return randBuf(o, r, n) }
	ints := func(n, lim int) []int32 {
		v := make([]int32, n)
		for i := range v {
			v[i] = int32(r.IntN(lim))
		}
		return v
	}
	half := func(n int) []int32 { // every other index: a sampled half
		v := make([]int32, n/2)
		for i := range v {
			v[i] = int32(2 * i)
		}
		return v
	}
	const (
		BT, C, F, V, Vp, NH, HS, T = 8192, 768, 3072, 50257, 50304, 12, 64, 1024
		LBT, LC, LF, LNH, LKV, LT  = 4096, 2048, 5632, 32, 4, 2048
		nParams                    = 124_000_000
	)
	run := func(name string, bytes, flops float64, op func()) {
		b.Run(name, func(b *testing.B) {
			op() // warm-up: the JIT, cuBLAS's heuristics
			if err := syncer.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				op()
			}
			if err := syncer.Sync(); err != nil {
				b.Fatal(err)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			if bytes > 0 {
				b.ReportMetric(bytes/sec/1e9, "GB/s")
			}
			if flops > 0 {
				b.ReportMetric(flops/sec/1e12, "TFLOP/s")
			}
		})
	}
	ps := o.(kernels.PrecisionSetter)

	big := 64 << 20
	x, y := buf(big), buf(big)
	run("Copy", 8*float64(big), 0, func() { o.Copy(y, x) })
	run("Axpy", 12*float64(big), 0, func() { o.Axpy(y, 0.5, x) })
	run("Fill", 4*float64(big), 0, func() { o.Fill(y, 1) })
	run("SumSquares", 4*float64(big), 0, func() { o.SumSquares(x) })

	for _, p := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		if err := ps.SetPrecision("MatMul", p); err != nil {
			b.Fatal(err)
		}
		n := 4096
		a, bb, c := buf(n*n), buf(n*n), buf(n*n)
		run("MatMul4096/"+p.String(), 0, 2*float64(n*n*n), func() { o.MatMul(c, a, bb, n, n, n, false, true, 1, 0) })
		in, w, out := buf(BT*C), buf(3*C*C), buf(BT*3*C)
		run("MatMulQKV/"+p.String(), 0, 2*float64(BT*3*C*C), func() { o.MatMul(out, in, w, BT, 3*C, C, false, true, 1, 0) })
	}
	if err := ps.SetPrecision("MatMul", kernels.FP32); err != nil {
		b.Fatal(err)
	}

	h, dh, bias := buf(BT*F), buf(BT*F), buf(F)
	run("AddBias", 8*float64(BT*F), 0, func() { o.AddBias(h, bias, BT, F) })
	run("BiasGrad", 4*float64(BT*F), 0, func() { o.BiasGrad(bias, dh, BT, F) })
	run("GELU", 8*float64(BT*F), 0, func() { o.GELU(dh, h) })
	run("GELUBackward", 16*float64(BT*F), 0, func() { o.GELUBackward(dh, h, h) })

	ids := ints(BT, V)
	wte, wpe, act, dact := buf(Vp*C), buf(T*C), buf(BT*C), buf(BT*C)
	run("Embed", 12*float64(BT*C), 0, func() { o.Embed(act, wte, wpe, ids, BT/T, T, C) })
	run("EmbedBackward", 12*float64(BT*C), 0, func() { o.EmbedBackward(wte, wpe, dact, ids, BT/T, T, C) })

	w, dw, mean, rstd, out := buf(C), buf(C), buf(BT), buf(BT), buf(BT*C)
	run("LayerNorm", 8*float64(BT*C), 0, func() { o.LayerNorm(out, mean, rstd, act, w, w, BT, C) })
	run("LayerNormBackward", 16*float64(BT*C), 0, func() { o.LayerNormBackward(dact, dw, dw, out, act, w, mean, rstd, BT, C) })

	qkv, dqkv, att := buf(BT*3*C), buf(BT*3*C), o.Alloc(o.AttentionState(BT/T, NH, T))
	pairs := float64(BT/T*NH) * float64(T) * float64(T+1) / 2
	run("Attention", 0, 4*HS*pairs, func() { o.Attention(out, att, qkv, BT/T, T, NH, NH, HS) })
	if err := ps.SetPrecision("Attention", kernels.BF16); err != nil {
		b.Fatal(err)
	}
	run("Attention/bf16", 0, 4*HS*pairs, func() { o.Attention(out, att, qkv, BT/T, T, NH, NH, HS) })
	if err := ps.SetPrecision("Attention", kernels.FP32); err != nil {
		b.Fatal(err)
	}
	if err := ps.SetPrecision("AttentionBackward", kernels.BF16); err != nil {
		b.Fatal(err)
	}
	run("AttentionBackward/bf16", 0, 14*HS*pairs, func() { o.AttentionBackward(dqkv, dact, out, qkv, att, BT/T, T, NH, NH, HS) })
	if err := ps.SetPrecision("AttentionBackward", kernels.FP32); err != nil {
		b.Fatal(err)
	}
	run("AttentionBackward", 0, 14*HS*pairs, func() { o.AttentionBackward(dqkv, dact, out, qkv, att, BT/T, T, NH, NH, HS) })

	logits := buf(BT * Vp)
	losses, targets := o.Alloc(BT), ints(BT, V)
	run("CrossEntropy", 12*float64(BT*Vp), 0, func() { o.CrossEntropy(losses, logits, logits, targets, BT, V, Vp, 1.0/BT) })

	wfc, gfc := buf(F*C), buf(F/2*C)
	rows, cols := half(F), half(F)
	run("GatherRows", 8*float64(F/2*C), 0, func() { o.GatherRows(gfc, wfc, rows, C) })
	run("ScatterAddRows", 12*float64(F/2*C), 0, func() { o.ScatterAddRows(wfc, gfc, rows, C) })
	run("GatherCols", 8*float64(F/2*C), 0, func() { o.GatherCols(gfc, wfc, C, F, cols) })
	run("ScatterAddCols", 12*float64(F/2*C), 0, func() { o.ScatterAddCols(wfc, gfc, C, F, cols) })

	p, g, m, v := buf(nParams), buf(nParams), buf(nParams), buf(nParams)
	a := kernels.AdamWArgs{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 1}
	run("AdamW", 28*float64(nParams), 0, func() { o.AdamW(p, g, m, v, a) })

	// TinyLlama's layer shapes
	lx, ldx, lw, ldw, lr, lout := buf(LBT*LC), buf(LBT*LC), buf(LC), buf(LC), buf(LBT), buf(LBT*LC)
	run("RMSNorm", 8*float64(LBT*LC), 0, func() { o.RMSNorm(lout, lr, lx, lw, LBT, LC, 1e-5) })
	run("RMSNormBackward", 16*float64(LBT*LC), 0, func() { o.RMSNormBackward(ldx, ldw, lout, lx, lw, lr, LBT, LC) })
	lW := (LNH + 2*LKV) * LC / LNH
	lqkv := buf(LBT * lW)
	run("RoPE", 8*float64(LBT*(LNH+LKV)*LC/LNH), 0, func() { o.RoPE(lqkv, LBT/LT, LT, LNH+LKV, LC/LNH, lW, 0, 10000, false) })
	lh, ldh, lact := buf(LBT*2*LF), buf(LBT*2*LF), buf(LBT*LF)
	run("SwiGLU", 12*float64(LBT*LF), 0, func() { o.SwiGLU(lact, lh, LBT, LF) })
	run("SwiGLUBackward", 28*float64(LBT*LF), 0, func() { o.SwiGLUBackward(ldh, lh, lact, LBT, LF) })
	lpairs := float64(LBT/LT*LNH) * float64(LT) * float64(LT+1) / 2
	lstate, lo := o.Alloc(o.AttentionState(LBT/LT, LNH, LT)), buf(LBT*LC)
	run("AttentionGQA", 0, 4*float64(LC/LNH)*lpairs, func() { o.Attention(lo, lstate, lqkv, LBT/LT, LT, LNH, LKV, LC/LNH) })
	if err := o.Err(); err != nil {
		b.Fatal(err)
	}
}
