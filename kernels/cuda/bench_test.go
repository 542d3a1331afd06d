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
	opsBench(o, fullShapes, func(name string, bytes, flops float64, op func()) {
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
	})
	if err := o.Err(); err != nil {
		b.Fatal(err)
	}
}

// benchShapes are BenchmarkOps's sizes: GPT-2's step (BT tokens of
// sequences of T, width C, MLP F, vocabulary V padded to Vp, NH heads of
// HS), TinyLlama's layer (the L sizes, LKV key/value heads), the
// elementwise ops' Big values, the square product's MM and the
// optimizer's Params.
type benchShapes struct {
	BT, C, F, V, Vp, NH, HS, T int
	LBT, LC, LF, LNH, LKV, LT  int
	Big, MM, Params            int
}

var fullShapes = benchShapes{
	BT: 8192, C: 768, F: 3072, V: 50257, Vp: 50304, NH: 12, HS: 64, T: 1024,
	LBT: 4096, LC: 2048, LF: 5632, LNH: 32, LKV: 4, LT: 2048,
	Big: 64 << 20, MM: 4096, Params: 124_000_000,
}

// TestBenchCalls runs every call of BenchmarkOps once at small shapes, so
// that a call the backend refuses (a type or shape error) fails here, not
// on a GPU's time.
func TestBenchCalls(t *testing.T) {
	o := backend(t)
	small := benchShapes{
		BT: 64, C: 48, F: 96, V: 97, Vp: 128, NH: 3, HS: 16, T: 32,
		LBT: 64, LC: 64, LF: 80, LNH: 4, LKV: 2, LT: 32,
		Big: 1000, MM: 48, Params: 1000,
	}
	n := 0
	opsBench(o, small, func(name string, bytes, flops float64, op func()) {
		op()
		if err := o.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n++
	})
	t.Logf("%d benchmark calls", n)
}

// opsBench hands run each op of the benchmark: its name, the bytes it
// moves at least or the FLOPs it does, and a call of it.
func opsBench(o kernels.Ops, sh benchShapes, run func(name string, bytes, flops float64, op func())) {
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
	BT, C, F, V, Vp, NH, HS, T := sh.BT, sh.C, sh.F, sh.V, sh.Vp, sh.NH, sh.HS, sh.T
	LBT, LC, LF, LNH, LKV, LT := sh.LBT, sh.LC, sh.LF, sh.LNH, sh.LKV, sh.LT
	ps := o.(kernels.PrecisionSetter)
	bs := o.(kernels.BF16Storage)
	bf := func(n int) kernels.Buf { // n random values in bf16
		x := bs.AllocBF16(n)
		o.Copy(x, buf(n))
		return x
	}
	must := func(err error) {
		if err != nil {
			panic(err) // SetPrecision of an op that has the variant
		}
	}

	for _, p := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		must(ps.SetPrecision("MatMul", p))
		n := sh.MM
		a, bb, c := buf(n*n), buf(n*n), buf(n*n)
		run("MatMul4096/"+p.String(), 0, 2*float64(n*n*n), func() { o.MatMul(c, a, bb, n, n, n, false, true, 1, 0) })
		in, w, out := buf(BT*C), buf(3*C*C), buf(BT*3*C)
		run("MatMulQKV/"+p.String(), 0, 2*float64(BT*3*C*C), func() { o.MatMul(out, in, w, BT, 3*C, C, false, true, 1, 0) })
	}
	must(ps.SetPrecision("MatMul", kernels.FP32))
	{ // bf16 storage: A, B and C in bf16
		n := sh.MM
		a, bb, c := bf(n*n), bf(n*n), bf(n*n)
		run("MatMul4096/bf16-stored", 0, 2*float64(n*n*n), func() { o.MatMul(c, a, bb, n, n, n, false, true, 1, 0) })
		in, w, out := bf(BT*C), bf(3*C*C), bf(BT*3*C)
		run("MatMulQKV/bf16-stored", 0, 2*float64(BT*3*C*C), func() { o.MatMul(out, in, w, BT, 3*C, C, false, true, 1, 0) })
	}

	// The memory-bound ops with their activations in fp32, then in bf16
	// (kernels.BF16Storage): the bytes count the activations' size, so the
	// second rate is against the same card at half the traffic; a
	// "/bf16-stored" name's time over the plain one's is what the storage
	// saves.
	for _, stored := range []bool{false, true} {
		es, sfx := 4.0, ""
		act := buf // activations
		if stored {
			es, sfx, act = 2, "/bf16-stored", bf
		}
		big := sh.Big
		x, y := act(big), act(big)
		run("Copy"+sfx, 2*es*float64(big), 0, func() { o.Copy(y, x) })
		run("Axpy"+sfx, 3*es*float64(big), 0, func() { o.Axpy(y, 0.5, x) })
		run("Fill"+sfx, es*float64(big), 0, func() { o.Fill(y, 1) })
		run("SumSquares"+sfx, es*float64(big), 0, func() { o.SumSquares(x) })
		if stored {
			w32 := buf(big)
			run("Copy/fp32-to-bf16", 6*float64(big), 0, func() { o.Copy(y, w32) })
		}

		h, dh, bias := act(BT*F), act(BT*F), buf(F)
		run("AddBias"+sfx, 2*es*float64(BT*F), 0, func() { o.AddBias(h, bias, BT, F) })
		run("BiasGrad"+sfx, es*float64(BT*F), 0, func() { o.BiasGrad(bias, dh, BT, F) })
		run("GELU"+sfx, 2*es*float64(BT*F), 0, func() { o.GELU(dh, h) })
		run("GELUBackward"+sfx, 4*es*float64(BT*F), 0, func() { o.GELUBackward(dh, h, h) })

		ids := ints(BT, V)
		wte, wpe, a, da := buf(Vp*C), buf(T*C), act(BT*C), act(BT*C)
		run("Embed"+sfx, (8+es)*float64(BT*C), 0, func() { o.Embed(a, wte, wpe, ids, BT/T, T, C) })
		run("EmbedBackward"+sfx, (8+es)*float64(BT*C), 0, func() { o.EmbedBackward(wte, wpe, da, ids, BT/T, T, C) })

		w, dw, mean, rstd, out := buf(C), buf(C), buf(BT), buf(BT), act(BT*C)
		run("LayerNorm"+sfx, 2*es*float64(BT*C), 0, func() { o.LayerNorm(out, mean, rstd, a, w, w, BT, C) })
		run("LayerNormBackward"+sfx, 4*es*float64(BT*C), 0, func() { o.LayerNormBackward(da, dw, dw, out, a, w, mean, rstd, BT, C) })

		qkv, dqkv, att := act(BT*3*C), act(BT*3*C), o.Alloc(o.AttentionState(BT/T, NH, T))
		pairs := float64(BT/T*NH) * float64(T) * float64(T+1) / 2
		for _, p := range []kernels.Precision{kernels.FP32, kernels.BF16} {
			for _, op := range []string{"Attention", "AttentionBackward"} {
				must(ps.SetPrecision(op, p))
			}
			name := "/" + p.String()
			if stored {
				name += "-bf16-stored"
			}
			if p == kernels.FP32 && !stored {
				name = ""
			}
			run("Attention"+name, 0, 4*float64(HS)*pairs, func() { o.Attention(out, att, qkv, BT/T, T, NH, NH, HS) })
			run("AttentionBackward"+name, 0, 14*float64(HS)*pairs, func() { o.AttentionBackward(dqkv, da, out, qkv, att, BT/T, T, NH, NH, HS) })
		}
		for _, op := range []string{"Attention", "AttentionBackward"} {
			must(ps.SetPrecision(op, kernels.FP32))
		}

		logits := act(BT * Vp)
		losses, targets := o.Alloc(BT), ints(BT, V)
		run("CrossEntropy"+sfx, 3*es*float64(BT*Vp), 0, func() { o.CrossEntropy(losses, logits, logits, targets, BT, V, Vp, 1/float32(BT)) })

		// weights stay fp32; with bf16 storage the gathers fill a bf16
		// copy and the scatters add a bf16 gradient
		wfc, gfc := buf(F*C), act(F/2*C)
		rows, cols := half(F), half(F)
		run("GatherRows"+sfx, (4+es)*float64(F/2*C), 0, func() { o.GatherRows(gfc, wfc, rows, C) })
		run("ScatterAddRows"+sfx, (8+es)*float64(F/2*C), 0, func() { o.ScatterAddRows(wfc, gfc, rows, C) })
		run("GatherCols"+sfx, (4+es)*float64(F/2*C), 0, func() { o.GatherCols(gfc, wfc, C, F, cols) })
		run("ScatterAddCols"+sfx, (8+es)*float64(F/2*C), 0, func() { o.ScatterAddCols(wfc, gfc, C, F, cols) })

		// TinyLlama's layer shapes
		lx, ldx, lw, ldw, lr, lout := act(LBT*LC), act(LBT*LC), buf(LC), buf(LC), buf(LBT), act(LBT*LC)
		run("RMSNorm"+sfx, 2*es*float64(LBT*LC), 0, func() { o.RMSNorm(lout, lr, lx, lw, LBT, LC, 1e-5) })
		run("RMSNormBackward"+sfx, 4*es*float64(LBT*LC), 0, func() { o.RMSNormBackward(ldx, ldw, lout, lx, lw, lr, LBT, LC) })
		lW := (LNH + 2*LKV) * LC / LNH
		lqkv := act(LBT * lW)
		run("RoPE"+sfx, 2*es*float64(LBT*(LNH+LKV)*LC/LNH), 0, func() { o.RoPE(lqkv, LBT/LT, LT, LNH+LKV, LC/LNH, lW, 0, 10000, false) })
		lh, ldh, lact := act(LBT*2*LF), act(LBT*2*LF), act(LBT*LF)
		run("SwiGLU"+sfx, 3*es*float64(LBT*LF), 0, func() { o.SwiGLU(lact, lh, LBT, LF) })
		run("SwiGLUBackward"+sfx, 7*es*float64(LBT*LF), 0, func() { o.SwiGLUBackward(ldh, lh, lact, LBT, LF) })
		lpairs := float64(LBT/LT*LNH) * float64(LT) * float64(LT+1) / 2
		lstate, lo := o.Alloc(o.AttentionState(LBT/LT, LNH, LT)), act(LBT*LC)
		run("AttentionGQA"+sfx, 0, 4*float64(LC/LNH)*lpairs, func() { o.Attention(lo, lstate, lqkv, LBT/LT, LT, LNH, LKV, LC/LNH) })
	}

	p, g, m, v := buf(sh.Params), buf(sh.Params), buf(sh.Params), buf(sh.Params)
	a := kernels.AdamWArgs{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 1}
	run("AdamW", 28*float64(sh.Params), 0, func() { o.AdamW(p, g, m, v, a) })
}
