package train

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
)

// BenchmarkRunDataWaitS3: how long a training run waits for its data when
// the set lies in object storage and the local cache is cold (issue 20,
// docs/PERF.md "Object storage (MinIO on the loopback)"). train.Run of
// tinyRun's model (GPT-2's vocabulary, 2 blocks, C 16: the step is small,
// so the wait is not hidden behind it) for 6 steps of two micro-batches of
// B=2, T=16, over 2 MB of GOROOT text in token files of 64 Ki tokens
// (about ten, so that the shuffled windows of the first steps need
// several), from:
//
//   - src=local: the set on the local disk;
//   - src=s3-cold: the same set in a real MinIO on the loopback address
//     (internal/store/s3test; `make minio` builds it, without it this
//     skips), the cache emptied before each iteration, outside the timer.
//
// data-wait-ms is the sum over the run's steps of metrics.jsonl's
// data_wait_ms (the time each step blocked on the loader), first-wait-ms
// that of the first step (the files its batch needs, fetched while the
// model waits), both medians over the iterations; ms/step the whole Run
// (setup and opening the set included) over its steps.
func BenchmarkRunDataWaitS3(b *testing.B) {
	srv := s3test.Start(b)
	bucket := srv.Bucket(b, "bench", "")
	local, remote := dataWaitSets(b, bucket+"sets/run")
	for _, c := range []struct{ src, dir string }{{"local", local}, {"s3-cold", remote}} {
		b.Run("src="+c.src, func(b *testing.B) {
			cache := filepath.Join(b.TempDir(), "cache")
			b.Setenv(store.EnvCache, cache)
			cfg := tinyRun(c.dir)
			out := filepath.Join(b.TempDir(), "run")
			var total, first []float64
			runs := 0
			for b.Loop() {
				b.StopTimer()
				if err := os.RemoveAll(cache); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := Run(context.Background(), cpu.New(), cfg, out, Options{Overwrite: runs > 0}); err != nil {
					b.Fatal(err)
				}
				runs++
				b.StopTimer()
				rs := records(b, filepath.Join(out, "metrics.jsonl"))
				if len(rs) != cfg.Steps {
					b.Fatalf("%d records of %d steps", len(rs), cfg.Steps)
				}
				sum := 0.0
				for _, r := range rs {
					sum += r.DataWaitMS
				}
				total = append(total, sum)
				first = append(first, rs[0].DataWaitMS)
				b.StartTimer()
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(runs*cfg.Steps), "ms/step")
			b.ReportMetric(medianOf(total), "data-wait-ms")
			b.ReportMetric(medianOf(first), "first-wait-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// dataWaitSets ingests 2 MB of GOROOT text and shards it with GPT-2 (files
// of 64 Ki tokens) twice: onto the local disk and to the URL; it returns
// both places.
func dataWaitSets(b *testing.B, url string) (string, string) {
	texts, err := corpusgen.GoRootTexts(2 << 20)
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	if err := corpusgen.WriteJSONL(filepath.Join(root, "in", "go.jsonl"), "text", texts); err != nil {
		b.Fatal(err)
	}
	docs := filepath.Join(root, "docs")
	if _, err := ingest.Run(context.Background(), []string{filepath.Join(root, "in")}, ingest.Options{Format: ingest.FormatJSONL, OutDir: docs}); err != nil {
		b.Fatal(err)
	}
	tok, err := tokenize.GPT2()
	if err != nil {
		b.Fatal(err)
	}
	o := shards.Options{OutDir: filepath.Join(root, "tok"), EOS: true, ValFraction: 0.1, ShardTokens: 1 << 16}
	res, err := shards.Build(context.Background(), tok, []string{docs}, o)
	if err != nil {
		b.Fatal(err)
	}
	o.OutDir = url
	if _, err := shards.Build(context.Background(), tok, []string{docs}, o); err != nil {
		b.Fatal(err)
	}
	return res.Dir, url
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
