package train

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// benchShapes are the (B, T) of the GPT-2 step benchmarks: llm.c's CPU
// default and a full context. ESTKIT_BENCH_T1024=0 leaves out the second
// (about a minute per run).
func benchShapes() [][2]int {
	s := [][2]int{{4, 64}}
	if os.Getenv("ESTKIT_BENCH_T1024") != "0" {
		s = append(s, [2]int{4, 1024})
	}
	return s
}

// BenchmarkGPT2Step: one training step of GPT-2 124M (forward, backward,
// AdamW) in fp32 at each shape, full and at EST's stage-1 and stage-2 rates
// (est=…); the anchor BenchmarkGPT2StepAnchor is PyTorch CPU on the same
// shapes (train/testdata/bench_torch.py, make bench), and BenchmarkSgemm the
// machine's sgemm rate for the MFU.
func BenchmarkGPT2Step(b *testing.B) {
	benchStep(b, "gpt2-124m", "124m", benchShapes())
}

// BenchmarkLlamaStep: the same for llama-mini (8 layers, d 512, grouped-
// query attention) at B=4, T=256; the anchor BenchmarkLlamaStepAnchor is
// PyTorch CPU (train/testdata/bench_torch_llama.py).
func BenchmarkLlamaStep(b *testing.B) {
	benchStep(b, "llama-mini", "mini", [][2]int{{4, 256}})
}

// benchStep times one training step of a preset at each shape and rate,
// as train.Run takes it.
func benchStep(b *testing.B, preset, label string, shapes [][2]int) {
	benchConfig(b, Presets[preset], label, shapes)
}

// benchConfig times one training step of a model at each shape and rate.
func benchConfig(b *testing.B, cfg ModelConfig, label string, shapes [][2]int) {
	ops := cpu.New()
	m, err := NewModel(ops, cfg, cfg.InitParams(1))
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range shapes {
		B, T := sh[0], sh[1]
		ids, tg := make([]int32, B*T), make([]int32, B*T)
		for i := range ids {
			ids[i], tg[i] = int32(r.IntN(cfg.Vocab)), int32(r.IntN(cfg.Vocab))
		}
		for _, est := range benchRates {
			s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(), Schedule: Schedule{Ends: []int{1}, Rates: []Rates{est.rates}}}
			sel, _, _ := s.Sample(0, 0)
			skipped := Plan{sel}.Skipped(cfg.Layers)
			b.Run(fmt.Sprintf("%s/B=%d,T=%d/est=%s", label, B, T, est.name), func(b *testing.B) {
				step := 0
				one := func() {
					step++
					benchTrainStep(b, m, ids, tg, B, T, sel, skipped, step)
				}
				one() // first touch of the moments and activations: not timed
				for b.Loop() {
					one()
				}
				secs := b.Elapsed().Seconds() / float64(b.N)
				f := cfg.StepFLOPs(sel, B, T)
				b.ReportMetric(secs*1000, "ms/step")
				b.ReportMetric(float64(B*T)/secs, "tok/s")
				b.ReportMetric(f.All/secs/1e9, "GFLOP/s")
				b.ReportMetric(f.All/1e9, "GFLOP/step")
			})
		}
	}
}

// benchTrainStep is one training step as the step benchmarks time it:
// zeroed gradients, forward and backward over the selection, the norm,
// AdamW with the gradient clipped to norm 1.
func benchTrainStep(b *testing.B, m Model, ids, tg []int32, B, T int, sel *Selection, skipped map[int]bool, step int) {
	m.ZeroGrads(skipped)
	if _, err := m.Forward(ids, tg, B, T, sel); err != nil {
		b.Fatal(err)
	}
	m.Backward(1)
	norm := m.GradNorm(skipped)
	m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1,
		GradScale: float32(min(1, 1/norm)), Step: step}, Skipped: skipped})
}

// BenchmarkSgemm: the backend's matrix product rate on GPT-2 124M's MLP
// shape (M×3072×768), the denominator of MFU, at the M of each step shape
// the step benchmarks run (B·T: M=256 for B=4, T=64; 4096 for T=1024;
// 2048 for BenchmarkSmallStep's B=8, T=256), since the rate grows with M
// and a step's products beat a smaller M's (docs/PERF.md). make bench's
// MFU pairs each step with the sgemm of its own B·T.
func BenchmarkSgemm(b *testing.B) {
	ms := []int{256, 2048}
	if os.Getenv("ESTKIT_BENCH_T1024") != "0" {
		ms = append(ms, 4096)
	}
	for _, m := range ms {
		b.Run(fmt.Sprintf("M=%d", m), func(b *testing.B) { sgemmRate(b, m) })
	}
}

// sgemmRate times the M×3072×768 product (a·wᵀ) for at least a second a
// round: make bench runs one iteration a round, and 20 products (0.1 s)
// moved by a third from round to round (163–224 GFLOP/s, docs/PERF.md),
// too unsteady for the denominator of every MFU.
func sgemmRate(b *testing.B, m int) {
	ops := cpu.New()
	const n, k = 3072, 768
	a, w, c := ops.Alloc(m*k), ops.Alloc(n*k), ops.Alloc(m*n)
	fill := func(x kernels.Buf) {
		v := make([]float32, x.Len())
		for i := range v {
			v[i] = float32(i%7) * 0.1
		}
		ops.Upload(x, v)
	}
	fill(a)
	fill(w)
	for range 3 { // first touch of c and OpenBLAS's buffers: not timed
		ops.MatMul(c, a, w, m, n, k, false, true, 1, 0)
	}
	var d time.Duration
	n0 := 0
	for b.Loop() {
		t := time.Now()
		for time.Since(t) < time.Second {
			ops.MatMul(c, a, w, m, n, k, false, true, 1, 0)
			n0++
		}
		d += time.Since(t)
	}
	b.ReportMetric(2*float64(m)*n*k*float64(n0)/d.Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(0, "ns/op")
}

// benchRates are the EST rates the step benchmarks compare: the full model
// and the est-gpt2 preset's first two stages.
var benchRates = []struct {
	name  string
	rates Rates
}{{"full", Rates{1, 1, 1}}, {"0.5:0.5:1", Rates{0.5, 0.5, 1}}, {"0.5:0.5:0.5", Rates{0.5, 0.5, 0.5}}}

// BenchmarkGPT2StepPeakRSS: the peak resident memory of a process that
// builds GPT-2 124M and trains two steps at one shape and rate (each in a
// child process of its own, since a process's peak only grows).
func BenchmarkGPT2StepPeakRSS(b *testing.B) {
	for _, sh := range benchShapes() {
		for _, est := range benchRates {
			b.Run(fmt.Sprintf("124m/B=%d,T=%d/est=%s", sh[0], sh[1], est.name), func(b *testing.B) {
				var rss float64
				for b.Loop() {
					cmd := exec.Command(os.Args[0], "-test.run=^TestStepPeakRSSChild$", "-test.v")
					cmd.Env = append(os.Environ(), fmt.Sprintf("ESTKIT_RSS_STEP=%d,%d,%g,%g,%g", sh[0], sh[1], est.rates.PH, est.rates.PM, est.rates.PL))
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("%v: %s", err, out)
					}
					m := regexp.MustCompile(`peak-rss (\d+)`).FindSubmatch(out)
					if m == nil {
						b.Fatalf("no peak-rss in %s", out)
					}
					v, _ := strconv.ParseFloat(string(m[1]), 64)
					rss = v / (1 << 20)
				}
				b.ReportMetric(rss, "MiB-peak-RSS")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// TestStepPeakRSSChild is BenchmarkGPT2StepPeakRSS's child: two training
// steps of GPT-2 124M at ESTKIT_RSS_STEP=B,T,pH,pM,pL, then its peak RSS.
func TestStepPeakRSSChild(t *testing.T) {
	spec := os.Getenv("ESTKIT_RSS_STEP")
	if spec == "" {
		t.Skip("runs only as BenchmarkGPT2StepPeakRSS's child process")
	}
	var B, T int
	var r Rates
	if _, err := fmt.Sscanf(spec, "%d,%d,%g,%g,%g", &B, &T, &r.PH, &r.PM, &r.PL); err != nil {
		t.Fatalf("ESTKIT_RSS_STEP=%q: %v", spec, err)
	}
	cfg := Presets["gpt2-124m"]
	ops := cpu.New()
	m, err := InitModel(ops, cfg, 1) // as train.Run builds it
	if err != nil {
		t.Fatal(err)
	}
	s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, Neurons: 4 * cfg.Channels, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{r}}}
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(i * 7919 % cfg.Vocab)
	}
	for step := 1; step <= 2; step++ {
		sel, _, _ := s.Sample(step, 0)
		skipped := Plan{sel}.Skipped(cfg.Layers)
		m.ZeroGrads(skipped)
		if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
			t.Fatal(err)
		}
		m.Backward(1)
		m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step}, Skipped: skipped})
	}
	fmt.Printf("peak-rss %d\n", peakRSS())
}

// BenchmarkSmallStep: one training step of the experiments' byte-level
// GPT-2 models (docs/EXPERIMENTS.md): exp, make experiment's (8 blocks,
// width 256, 8 heads, B=8, T=256), and horizon, make experiment-horizon's
// (4 blocks, width 128, 4 heads, B=8, T=256), full and at EST's stage
// rates. Small products and per-op costs dominate these steps, unlike
// GPT-2 124M's; MFU is GFLOP/s over BenchmarkSgemm's rate of the same run.
func BenchmarkSmallStep(b *testing.B) {
	for _, m := range []struct {
		label string
		cfg   ModelConfig
	}{
		{"exp", ModelConfig{Vocab: 257, Padded: 384, Layers: 8, Heads: 8, Channels: 256, MaxT: 256}},
		{"horizon", ModelConfig{Vocab: 257, Padded: 384, Layers: 4, Heads: 4, Channels: 128, MaxT: 256}},
	} {
		benchConfig(b, m.cfg, m.label, [][2]int{{8, 256}})
	}
}
