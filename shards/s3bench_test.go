package shards

// Benchmarks of token sets on object storage (issue 20, docs/PERF.md
// "Object storage (MinIO on the loopback)"): each starts a real MinIO on
// the loopback address (internal/store/s3test; `make minio` builds it, and
// without it they skip) and puts a set there and the same set on the local
// disk, so that the local figure and the object storage ones come from one
// process, side by side. The data is the English benchmark text that make
// bench writes (ESTKIT_BENCH_TEXT, BENCH_TEXT_MB: 50 MB by default).

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// BenchmarkLoaderS3: one pass over a token set's train split (as many
// batches of 8 × 1025 tokens, shuffle order, as its tokens fill), the set
// opened anew in each iteration (an open is part of what a run pays),
// from three places:
//
//   - src=local: the set on the local disk (mapped; in the page cache);
//   - src=s3-cold: the set in MinIO with an empty cache (emptied before each
//     iteration, outside the timer): every file is downloaded, checked
//     against its sha256 and mapped while the loader waits for it;
//   - src=s3-warm: the set in MinIO with the copies an earlier open left in
//     the cache directory, as a second run on the same machine finds them:
//     each is adopted after one sha256 check, nothing is downloaded.
//
// tok/s and MB/s (of token file bytes) as BenchmarkLoader reports them;
// %waiting is the share of the time the consumer blocked in Next, and
// downloads the files fetched per iteration (0 when warm).
func BenchmarkLoaderS3(b *testing.B) {
	docs, _, _ := benchDocSet(b)
	srv := s3test.Start(b)
	bucket := srv.Bucket(b, "bench", "")
	// files of 1 Mi tokens (2 MiB; the default is 256 Mi): a set of tens
	// of MB then has about ten files, and the cold cache's downloads can
	// run ahead of the reads, as they do over a real set's many files
	o := Options{OutDir: filepath.Join(b.TempDir(), "tok"), EOS: true, ShardTokens: 1 << 20}
	local, err := Build(context.Background(), gpt2(b), []string{docs}, o)
	if err != nil {
		b.Fatal(err)
	}
	remote := bucket + "sets/loader"
	o.OutDir = remote
	if _, err := Build(context.Background(), gpt2(b), []string{docs}, o); err != nil {
		b.Fatal(err)
	}
	const B, T = 8, 1024
	sp := local.Manifest.Splits[Train]
	batches := max(sp.Tokens/(B*(T+1)), 1)
	tokenBytes := int64(local.Manifest.Tokenizer.TokenBits / 8)
	for _, c := range []struct {
		src, dir string
		cold     bool
	}{{"local", local.Dir, false}, {"s3-cold", remote, true}, {"s3-warm", remote, false}} {
		b.Run("src="+c.src, func(b *testing.B) {
			cache := filepath.Join(b.TempDir(), "cache")
			b.Setenv(store.EnvCache, cache)
			if c.src == "s3-warm" {
				// fill the cache directory, outside the timer
				benchLoaderPass(b, c.dir, B, T, batches)
			}
			b.SetBytes(batches * B * (T + 1) * tokenBytes)
			var waited float64
			var downloads int
			b.ResetTimer()
			for b.Loop() {
				if c.cold {
					b.StopTimer()
					if err := os.RemoveAll(cache); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				w, n := benchLoaderPass(b, c.dir, B, T, batches)
				waited += w
				downloads += n
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(B*(T+1))*float64(batches)*float64(b.N)/secs, "tok/s")
			b.ReportMetric(100*waited/secs, "%waiting")
			b.ReportMetric(float64(downloads)/float64(b.N), "downloads")
		})
	}
}

// benchLoaderPass opens the set at dir, reads batches batches of B × T+1
// tokens through a Loader and closes it; it returns the seconds the reads
// blocked in Next and the files the set's cache downloaded.
func benchLoaderPass(b *testing.B, dir string, B, T int, batches int64) (float64, int) {
	set, err := OpenWith(dir, OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	l, err := NewLoader(Config{Data: []Weighted{{set, 1}}, B: B, T: T, Seed: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for range batches {
		bt, err := l.Next()
		if err != nil {
			b.Fatal(err)
		}
		bt.Release()
	}
	n := 0
	if c := set.Cache(); c != nil {
		n = c.Downloads()
	}
	return l.Waited().Seconds(), n
}

// BenchmarkShardS3: estkit shard (GPT-2, one worker per GOMAXPROCS, as
// BenchmarkShardBuild) of the English benchmark text's document set, read
// from the local disk or from MinIO (in=) and written to the local disk or
// to MinIO (out=), into a fresh directory or prefix per iteration. The
// cache of downloads is emptied before each iteration, outside the timer,
// so that in=s3 reads the documents from the server every time. MB/s is of
// document text, tok/s of tokens written, as BenchmarkShardBuild reports.
func BenchmarkShardS3(b *testing.B) {
	docs, _, n := benchDocSet(b)
	srv := s3test.Start(b)
	bucket := srv.Bucket(b, "bench", "")
	cache := filepath.Join(b.TempDir(), "cache")
	b.Setenv(store.EnvCache, cache)
	remoteDocs := benchDocsToBucket(b, bucket+"docs")
	for _, c := range []struct{ in, out string }{{"local", "local"}, {"s3", "local"}, {"local", "s3"}, {"s3", "s3"}} {
		b.Run("in="+c.in+",out="+c.out, func(b *testing.B) {
			in := docs
			if c.in == "s3" {
				in = remoteDocs
			}
			b.SetBytes(n)
			var tokens int64
			i := 0
			for b.Loop() {
				b.StopTimer()
				if err := os.RemoveAll(cache); err != nil {
					b.Fatal(err)
				}
				out := filepath.Join(b.TempDir(), "tok")
				if c.out == "s3" {
					out = bucket + "tok/" + strconv.Itoa(i)
				}
				i++
				b.StartTimer()
				res, err := Build(context.Background(), gpt2(b).Clone(), []string{in}, Options{OutDir: out, ValFraction: DefaultValFraction})
				if err != nil {
					b.Fatal(err)
				}
				tokens = res.Manifest.Splits[Train].Tokens + res.Manifest.Splits[Val].Tokens
				b.StopTimer()
				if c.out == "s3" {
					srv.RemovePrefix(b, "bench", "tok/")
				} else {
					os.RemoveAll(out)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// benchDocsToBucket ingests the benchmark text into a document set at the
// URL (the same options as benchDocSet's local one) and returns the URL.
func benchDocsToBucket(b *testing.B, url string) string {
	in := filepath.Join(os.Getenv("ESTKIT_BENCH_TEXT"), "english.jsonl")
	if _, err := ingest.Run(context.Background(), []string{in}, ingest.Options{Format: ingest.FormatJSONL, Corpus: "english", OutDir: url}); err != nil {
		b.Fatal(err)
	}
	return url
}
