package shards

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/tokenize"
)

var tokenizeEOS = tokenize.EncodeOptions{EOS: true}

var benchDocs struct {
	once  sync.Once
	dir   string
	texts []string
	bytes int64
	err   error
}

// benchDocSet ingests the English benchmark text that make bench writes
// (ESTKIT_BENCH_TEXT/english.jsonl) once per process, into document
// shards, and keeps the texts for the tokenizer-only bound.
func benchDocSet(b *testing.B) (string, []string, int64) {
	src := os.Getenv("ESTKIT_BENCH_TEXT")
	if src == "" {
		b.Skip("ESTKIT_BENCH_TEXT not set: make bench writes the texts and sets it")
	}
	d := &benchDocs
	d.once.Do(func() {
		dir, err := os.MkdirTemp("", "estkit-bench-docs-")
		if err != nil {
			d.err = err
			return
		}
		d.dir = filepath.Join(dir, "docs")
		in := filepath.Join(dir, "in")
		os.MkdirAll(in, 0o755)
		if err := os.Symlink(filepath.Join(src, "english.jsonl"), filepath.Join(in, "english.jsonl")); err != nil {
			d.err = err
			return
		}
		if _, err := ingest.Run(context.Background(), []string{in}, ingest.Options{Format: ingest.FormatJSONL, Corpus: "english", OutDir: d.dir}); err != nil {
			d.err = err
			return
		}
		m, err := ingest.ReadManifest(d.dir)
		if err != nil {
			d.err = err
			return
		}
		for _, f := range m.Outputs {
			err := ingest.ScanShard(filepath.Join(d.dir, f.Name), func(rec arrow.RecordBatch) (bool, error) {
				col := rec.Column(ingest.ColText).(*array.String)
				for i := 0; i < col.Len(); i++ {
					d.texts = append(d.texts, col.Value(i))
					d.bytes += int64(len(col.Value(i)))
				}
				return true, nil
			})
			if err != nil {
				d.err = err
				return
			}
		}
	})
	if d.err != nil {
		b.Fatal(d.err)
	}
	return d.dir, d.texts, d.bytes
}

// BenchmarkShardBuild: estkit shard (GPT-2, Build's default of one worker
// per GOMAXPROCS, so that -test.cpu 1,2,4,... gives its scaling) on the English benchmark
// text, from document shards to token shards on disk; its bound,
// BenchmarkShardBound, is the bare tokenizer on one core times GOMAXPROCS.
func BenchmarkShardBuild(b *testing.B) {
	docs, _, n := benchDocSet(b)
	b.SetBytes(n)
	var tokens int64
	for b.Loop() {
		out := b.TempDir()
		res, err := Build(context.Background(), gpt2(b).Clone(), []string{docs}, Options{OutDir: out, ValFraction: DefaultValFraction})
		if err != nil {
			b.Fatal(err)
		}
		tokens = res.Manifest.Splits[Train].Tokens + res.Manifest.Splits[Val].Tokens
		os.RemoveAll(out)
	}
	b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkShardBound: one goroutine encoding the same texts (with the EOS
// separator) from memory; MB/s is scaled by GOMAXPROCS, the most a
// parallel shard could reach. Both start with a cold tokenizer cache.
func BenchmarkShardBound(b *testing.B) {
	_, texts, n := benchDocSet(b)
	b.SetBytes(n * int64(runtime.GOMAXPROCS(0)))
	for b.Loop() {
		e := gpt2(b).Clone().NewEncoder()
		var out []uint32
		for _, t := range texts {
			out, _ = e.Encode(t, tokenizeEOS, out[:0])
		}
	}
}

// BenchmarkLoader: batches of 8 × 1025 tokens in shuffle order from a set
// in the page cache. consumer=none only reads each batch (the loader's own
// rate; it waits almost always); consumer=busy spends about 100 µs of CPU on
// each batch, as a trainer would, and %waiting is the time it blocked in
// Next.
func BenchmarkLoader(b *testing.B) {
	docs, _, _ := benchDocSet(b)
	out := b.TempDir()
	res, err := Build(context.Background(), gpt2(b), []string{docs}, Options{OutDir: out, EOS: true})
	if err != nil {
		b.Fatal(err)
	}
	set, err := Open(res.Dir, false)
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	const B, T = 8, 1024
	for _, c := range []struct {
		name    string
		batches int
		work    time.Duration
	}{{"none", 20000, 0}, {"busy", 5000, 100 * time.Microsecond}} {
		b.Run("consumer="+c.name, func(b *testing.B) {
			l, err := NewLoader(Config{Data: []Weighted{{set, 1}}, B: B, T: T, Seed: 1}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var sum int64
			for b.Loop() {
				for range c.batches {
					bt, err := l.Next()
					if err != nil {
						b.Fatal(err)
					}
					for t0 := time.Now(); time.Since(t0) < c.work; {
						sum += int64(bt.Tokens[sum&1023])
					}
					bt.Release()
				}
			}
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(B*(T+1))*float64(c.batches)*float64(b.N)/secs, "tok/s")
			b.ReportMetric(100*l.Waited().Seconds()/secs, "%waiting")
		})
	}
}
