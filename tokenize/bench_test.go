package tokenize

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// benchTexts reads a benchmark file that `make bench` writes
// (ESTKIT_BENCH_TEXT/{english,code}.jsonl, from GOROOT text).
func benchTexts(b *testing.B, name string) ([]string, int64) {
	dir := os.Getenv("ESTKIT_BENCH_TEXT")
	if dir == "" {
		b.Skip("ESTKIT_BENCH_TEXT not set: make bench writes the texts and sets it")
	}
	f, err := os.Open(filepath.Join(dir, name+".jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var texts []string
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<28)
	for sc.Scan() {
		var d struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			b.Fatal(err)
		}
		texts = append(texts, d.Text)
		n += int64(len(d.Text))
	}
	return texts, n
}

// BenchmarkGPT2Encode: one goroutine encoding the English and the code
// texts; its anchor BenchmarkGPT2Anchor is tiktoken (WASM) on the same
// files, run by tokenize/testdata/ref/bench.mjs in the same make bench round.
func BenchmarkGPT2Encode(b *testing.B) { benchEncode(b, gpt2(b)) }

// BenchmarkLlama2Encode: the same for Llama 2's SentencePiece model; its
// anchor BenchmarkLlama2Anchor is C++ SentencePiece (bench_spm.py).
func BenchmarkLlama2Encode(b *testing.B) { benchEncode(b, llama2(b)) }

// benchEncode encodes the English and the code texts on one goroutine.
func benchEncode(b *testing.B, tok *Tokenizer) {
	for _, name := range []string{"english", "code"} {
		b.Run(name, func(b *testing.B) {
			texts, n := benchTexts(b, name)
			b.SetBytes(n)
			b.ReportAllocs()
			var tokens int
			for b.Loop() {
				e := tok.NewEncoder() // a fresh cache each pass
				tokens = 0
				var out []uint32
				for _, t := range texts {
					out, _ = e.Encode(t, EncodeOptions{}, out[:0])
					tokens += len(out)
				}
			}
			b.ReportMetric(float64(tokens)*float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkGPT2Batch: EncodeBatch on 1 and 2 goroutines, for the scaling.
func BenchmarkGPT2Batch(b *testing.B) {
	tok := gpt2(b)
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("english/threads=%d", w), func(b *testing.B) {
			texts, n := benchTexts(b, "english")
			b.SetBytes(n)
			for b.Loop() {
				if _, err := tok.EncodeBatch(texts, EncodeOptions{}, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGPT2Load: building the GPT-2 tokenizer from the embedded ranks.
func BenchmarkGPT2Load(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := loadGPT2(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
}

// BenchmarkFileLoad: reading and checking Llama 2's tokenizer.model, and
// the GPT-2 and Llama 2 tokenizer.json files.
func BenchmarkFileLoad(b *testing.B) {
	d := os.Getenv("ESTKIT_REFS")
	if d == "" {
		b.Skip("ESTKIT_REFS not set: make refs fetches the Llama 2 model")
	}
	for _, name := range []string{"llama2.model", "gpt2-tokenizer.json", "llama2-tokenizer.json"} {
		b.Run(strings.NewReplacer(".", "-").Replace(name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Load(filepath.Join(d, name)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
		})
	}
}

// BenchmarkEncodeParallel: the encoder itself on 1 and 2 goroutines, each
// with its own Encoder and a reused ids buffer (as a shard writer uses it),
// so that the scaling is the tokenizer's and not the allocator's.
func BenchmarkEncodeParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		tok  func(testing.TB) *Tokenizer
	}{{"gpt2", gpt2}, {"llama2", llama2}} {
		for _, w := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/english/threads=%d", tc.name, w), func(b *testing.B) {
				tok := tc.tok(b)
				texts, n := benchTexts(b, "english")
				b.SetBytes(n)
				for b.Loop() {
					var next atomic.Int64
					var wg sync.WaitGroup
					for range w {
						wg.Go(func() {
							e := tok.NewEncoder()
							var out []uint32
							for {
								i := int(next.Add(1) - 1)
								if i >= len(texts) {
									return
								}
								out, _ = e.Encode(texts[i], EncodeOptions{}, out[:0])
							}
						})
					}
					wg.Wait()
				}
			})
		}
	}
}
