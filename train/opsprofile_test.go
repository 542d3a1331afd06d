package train

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// opClock is a backend whose compute ops are timed, one wall-clock sum
// per op: the step's profile by op, which on two cores says more than a
// sampling profile of the parallel kernels' threads.
type opClock struct {
	kernels.Ops
	sum map[string]time.Duration
}

func (o *opClock) time(op string) func() {
	t := time.Now()
	return func() { o.sum[op] += time.Since(t) }
}

func (o *opClock) Fill(b kernels.Buf, v float32) { defer o.time("Fill")(); o.Ops.Fill(b, v) }
func (o *opClock) Copy(d, s kernels.Buf)         { defer o.time("Copy")(); o.Ops.Copy(d, s) }
func (o *opClock) SumSquares(b kernels.Buf) float64 {
	defer o.time("SumSquares")()
	return o.Ops.SumSquares(b)
}
func (o *opClock) MatMul(c, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32) {
	defer o.time(fmt.Sprintf("MatMul %d×%d×%d", min(m, n), max(m, n), k))()
	o.Ops.MatMul(c, a, b, m, n, k, ta, tb, alpha, beta)
}
func (o *opClock) AddBias(y, bias kernels.Buf, rows, cols int) {
	defer o.time("AddBias")()
	o.Ops.AddBias(y, bias, rows, cols)
}
func (o *opClock) BiasGrad(db, dy kernels.Buf, rows, cols int) {
	defer o.time("BiasGrad")()
	o.Ops.BiasGrad(db, dy, rows, cols)
}
func (o *opClock) Embed(out, wte, wpe kernels.Buf, ids []int32, B, T, C int) {
	defer o.time("Embed")()
	o.Ops.Embed(out, wte, wpe, ids, B, T, C)
}
func (o *opClock) EmbedBackward(dwte, dwpe, dout kernels.Buf, ids []int32, B, T, C int) {
	defer o.time("EmbedBackward")()
	o.Ops.EmbedBackward(dwte, dwpe, dout, ids, B, T, C)
}
func (o *opClock) LayerNorm(out, mean, rstd, x, w, b kernels.Buf, rows, C int) {
	defer o.time("LayerNorm")()
	o.Ops.LayerNorm(out, mean, rstd, x, w, b, rows, C)
}
func (o *opClock) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd kernels.Buf, rows, C int) {
	defer o.time("LayerNormBackward")()
	o.Ops.LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd, rows, C)
}
func (o *opClock) GELU(out, x kernels.Buf) { defer o.time("GELU")(); o.Ops.GELU(out, x) }
func (o *opClock) GELUBackward(dx, x, dout kernels.Buf) {
	defer o.time("GELUBackward")()
	o.Ops.GELUBackward(dx, x, dout)
}
func (o *opClock) Attention(out, att, qkv kernels.Buf, B, T, NH, NKV, HS int) {
	defer o.time("Attention")()
	o.Ops.Attention(out, att, qkv, B, T, NH, NKV, HS)
}
func (o *opClock) AttentionBackward(dqkv, dout, out, qkv, att kernels.Buf, B, T, NH, NKV, HS int) {
	defer o.time("AttentionBackward")()
	o.Ops.AttentionBackward(dqkv, dout, out, qkv, att, B, T, NH, NKV, HS)
}
func (o *opClock) CrossEntropy(losses, dlogits, logits kernels.Buf, targets []int32, rows, V, Vp int, scale float32) {
	defer o.time("CrossEntropy")()
	o.Ops.CrossEntropy(losses, dlogits, logits, targets, rows, V, Vp, scale)
}
func (o *opClock) SumSquaresSpans(b kernels.Buf, spans [][2]int) float64 {
	defer o.time("SumSquares")()
	return o.Ops.(kernels.SpanSumSquarer).SumSquaresSpans(b, spans)
}
func (o *opClock) AdamWGradRows(p, g, m, v kernels.Buf, width int, has []bool, a kernels.AdamWArgs) {
	defer o.time("AdamW")()
	o.Ops.(kernels.GradRowsAdamWer).AdamWGradRows(p, g, m, v, width, has, a)
}
func (o *opClock) ZeroesGrads() bool {
	z, ok := o.Ops.(kernels.GradZeroer)
	return ok && z.ZeroesGrads()
}
func (o *opClock) MatMulSampled(c, a, w kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32, rows, cols []int32, width int) bool {
	defer o.time(fmt.Sprintf("MatMulSampled %d×%d×%d", min(m, n), max(m, n), k))()
	sm, ok := o.Ops.(kernels.SampledMatMuler)
	return ok && sm.MatMulSampled(c, a, w, m, n, k, ta, tb, alpha, beta, rows, cols, width)
}
func (o *opClock) MatMulScatter(dst, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha float32, rows, cols []int32, width int) bool {
	defer o.time(fmt.Sprintf("MatMulScatter %d×%d×%d", min(m, n), max(m, n), k))()
	sm, ok := o.Ops.(kernels.SampledMatMuler)
	return ok && sm.MatMulScatter(dst, a, b, m, n, k, ta, tb, alpha, rows, cols, width)
}
func (o *opClock) GatherRows(dst, src kernels.Buf, rows []int32, width int) {
	defer o.time("GatherRows")()
	o.Ops.GatherRows(dst, src, rows, width)
}
func (o *opClock) ScatterAddRows(dst, src kernels.Buf, rows []int32, width int) {
	defer o.time("ScatterAddRows")()
	o.Ops.ScatterAddRows(dst, src, rows, width)
}
func (o *opClock) GatherCols(dst, src kernels.Buf, n, width int, cols []int32) {
	defer o.time("GatherCols")()
	o.Ops.GatherCols(dst, src, n, width, cols)
}
func (o *opClock) ScatterAddCols(dst, src kernels.Buf, n, width int, cols []int32) {
	defer o.time("ScatterAddCols")()
	o.Ops.ScatterAddCols(dst, src, n, width, cols)
}
func (o *opClock) AdamW(p, g, m, v kernels.Buf, a kernels.AdamWArgs) {
	defer o.time("AdamW")()
	o.Ops.AdamW(p, g, m, v, a)
}
func (o *opClock) AdamWSub(p, g, m, v kernels.Buf, width int, rows, cols []int32, a kernels.AdamWArgs) {
	defer o.time("AdamWSub")()
	o.Ops.AdamWSub(p, g, m, v, width, rows, cols, a)
}

// BenchmarkStepOps: GPT-2 124M's step at BenchmarkGPT2Step's shapes, full
// and at EST's rates, with the wall-clock time of each op (ms/step; "rest"
// is the time outside every op). A profile, not a figure make bench
// compares: it runs only with ESTKIT_STEP_OPS=1, which also prints the ops
// by time.
func BenchmarkStepOps(b *testing.B) {
	if os.Getenv("ESTKIT_STEP_OPS") != "1" {
		b.Skip("a profile of the step by op: ESTKIT_STEP_OPS=1 runs it")
	}
	cfg := Presets["gpt2-124m"]
	ops := &opClock{Ops: cpu.New(), sum: map[string]time.Duration{}}
	m, err := NewModel(ops, cfg, cfg.InitParams(1))
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range benchShapes() {
		B, T := sh[0], sh[1]
		ids, tg := make([]int32, B*T), make([]int32, B*T)
		for i := range ids {
			ids[i], tg[i] = int32(r.IntN(cfg.Vocab)), int32(r.IntN(cfg.Vocab))
		}
		for _, est := range benchRates {
			stepOps(b, m, ops, cfg, est.name, est.rates, ids, tg, B, T)
		}
	}
}

// stepOps times one shape and rate of BenchmarkStepOps.
func stepOps(b *testing.B, m Model, ops *opClock, cfg ModelConfig, name string, rates Rates, ids, tg []int32, B, T int) {
	s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(), Schedule: Schedule{Ends: []int{1}, Rates: []Rates{rates}}}
	b.Run(fmt.Sprintf("B=%d,T=%d/est=%s", B, T, name), func(b *testing.B) {
		step := 0
		one := func() {
			step++
			sel, _, _ := s.Sample(step, 0) // a new subnetwork each step, as in training
			benchTrainStep(b, m, ids, tg, B, T, sel, Plan{sel}.Skipped(cfg.Layers), step)
		}
		one()
		clear(ops.sum)
		for b.Loop() {
			one()
		}
		per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
		var in time.Duration
		names := make([]string, 0, len(ops.sum))
		for k, d := range ops.sum {
			in += d
			names = append(names, k)
		}
		slices.SortFunc(names, func(x, y string) int { return int(ops.sum[y] - ops.sum[x]) })
		b.ReportMetric(per(b.Elapsed()), "ms/step")
		b.ReportMetric(per(b.Elapsed()-in), "rest-ms")
		var lines []string
		for _, k := range names {
			b.ReportMetric(per(ops.sum[k]), strings.ReplaceAll(k, " ", "_")+"-ms")
			lines = append(lines, fmt.Sprintf("  %-28s %8.1f ms", k, per(ops.sum[k])))
		}
		fmt.Fprintf(os.Stderr, "B=%d,T=%d est=%s, %.1f ms/step:\n%s\n", B, T, name, per(b.Elapsed()), strings.Join(lines, "\n"))
	})
}
