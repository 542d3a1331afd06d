package ingest_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// BenchmarkIngestS3: ingest.Run (--format jsonl, Workers: NumCPU) of the
// English benchmark text that make bench writes (ESTKIT_BENCH_TEXT/
// english.jsonl, BENCH_TEXT_MB: 50 MB by default), read from the local
// disk or from a real MinIO on the loopback address (in=), written to the
// local disk or to MinIO (out=), into a fresh directory or prefix per
// iteration (issue 20, docs/PERF.md "Object storage (MinIO on the
// loopback)"). MinIO is internal/store/s3test's; `make minio` builds it,
// and without it this skips. The cache of downloads is emptied before each
// iteration, outside the timer. MB/s is of document text, as the other
// ingest benchmarks report it; input-MB/s of the JSONL file.
func BenchmarkIngestS3(b *testing.B) {
	text := os.Getenv("ESTKIT_BENCH_TEXT")
	if text == "" {
		b.Skip("ESTKIT_BENCH_TEXT not set: make bench writes the texts and sets it")
	}
	src := filepath.Join(text, "english.jsonl")
	st, err := os.Stat(src)
	if err != nil {
		b.Fatal(err)
	}
	srv := s3test.Start(b)
	bucket := srv.Bucket(b, "bench", "")
	// the same one file, in a directory of its own and under a prefix
	local := filepath.Join(b.TempDir(), "raw")
	if err := os.MkdirAll(local, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Symlink(src, filepath.Join(local, "english.jsonl")); err != nil {
		b.Fatal(err)
	}
	if _, err := srv.Client.FPutObject(context.Background(), "bench", "raw/english.jsonl", src, minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	remote := bucket + "raw"
	cache := filepath.Join(b.TempDir(), "cache")
	b.Setenv(store.EnvCache, cache)
	for _, c := range []struct{ in, out string }{{"local", "local"}, {"s3", "local"}, {"local", "s3"}, {"s3", "s3"}} {
		b.Run("in="+c.in+",out="+c.out, func(b *testing.B) {
			in := local
			if c.in == "s3" {
				in = remote
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				if err := os.RemoveAll(cache); err != nil {
					b.Fatal(err)
				}
				out := filepath.Join(b.TempDir(), "docs")
				if c.out == "s3" {
					out = bucket + "docs/" + strconv.Itoa(i)
				}
				i++
				benchFreshHeap(b) // starts the timer again
				res, err := ingest.Run(context.Background(), []string{in}, ingest.Options{
					Format: ingest.FormatJSONL, Corpus: "english", OutDir: out, Force: true, Workers: runtime.NumCPU(),
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.SetBytes(res.Manifest.Counts.TextBytes) // MB/s is text MB/s
				if c.out == "s3" {
					srv.RemovePrefix(b, "bench", "docs/")
				} else if err := os.RemoveAll(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			reportMBps(b, st.Size(), "input-MB/s")
		})
	}
}
