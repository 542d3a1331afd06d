package train

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// BenchmarkRunStep: train.Run end to end on a small GPT-2 (4 blocks, C 128,
// the full 50257-token classifier) over a GOROOT token set, 12 steps of two
// micro-batches of B=16, T=16 (the test set's val split holds one window of
// 16) through EST's three stages. ms/step is the whole Run (setup, the final
// evaluation, checkpoint and plot) over its steps; step-ms the median of the
// steps' own timing (metrics.jsonl's ms): the trainer's loop around the
// model's step, which BenchmarkGPT2Step does not run.
func BenchmarkRunStep(b *testing.B) {
	set := tokenSet(b)
	s, err := ParseSchedule("4,8,12", "0.5:0.5:0.5,0.5:0.5:1,1:1:1")
	if err != nil {
		b.Fatal(err)
	}
	c := Recipe(ModelConfig{Vocab: 50257, Padded: 50304, Layers: 4, Heads: 4, Channels: 128, MaxT: 16})
	c.Data, c.Steps, c.Batch, c.Seq, c.Accum, c.Seed, c.Warmup = []Data{{Dir: set, Weight: 1}}, 12, 16, 16, 2, 5, 2
	c.EST, c.Schedule, c.EvalBatches = "custom", &s, 1
	out := filepath.Join(b.TempDir(), "run")
	var ms []float64
	runs := 0
	for b.Loop() {
		if _, err := Run(context.Background(), cpu.New(), c, out, Options{Overwrite: runs > 0}); err != nil {
			b.Fatal(err)
		}
		runs++
		for _, r := range records(b, filepath.Join(out, "metrics.jsonl")) {
			ms = append(ms, r.MS)
		}
	}
	slices.Sort(ms)
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(runs*c.Steps), "ms/step")
	b.ReportMetric(ms[len(ms)/2], "step-ms")
	b.ReportMetric(0, "ns/op")
}
