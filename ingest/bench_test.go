package ingest_test

// Benchmarks of `estkit ingest` with their anchors (`make bench`,
// docs/PERF.md). Each XIngest benchmark has an XBound partner that measures,
// on the same files in the same run, the work no ingest of that format can
// avoid (decompression, and JSON decoding for SlimPajama) on one goroutine.
// MB/s (b.SetBytes) is always MB of document text per second.
//
// The corpora are generated from GOROOT text by corpusgen, outside the timer,
// once per process (sync.Once). They are also kept between processes in
// $TMPDIR/estkit-bench-NAME-HASH, HASH covering the Go version, GOROOT and
// the source of the generators (corpusgen and this file), so that the next
// `make bench` round does not spend half a minute regenerating them; a new
// HASH replaces the copies of the old one. About 120 MB in all; delete
// $TMPDIR/estkit-bench-* to reclaim the space.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sync/errgroup"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/ingest/corpusgen"
)

// Benchmark corpus sizes, in bytes of document text.
const (
	benchCacheVersion = "2"
	benchSlimBytes    = 200e6
	benchSlimSmall    = 50e6 // the smaller input of BenchmarkIngestPeakRSS
	benchSlimFiles    = 4    // SlimPajama is released as many chunk files
	benchOWTBytes     = 100e6
	benchOWTPerFile   = 160 // documents per urlsf_subset00-K_data.xz: ~1.9 MB of text, as in the release
)

// benchCorpus is a generated corpus on disk.
type benchCorpus struct {
	RootRel    string   `json:"root"`  // the directory given to ingest, relative to the cache directory
	Root       string   `json:"-"`     // the same, absolute
	Files      []string `json:"files"` // relative to Root, in ingest's order
	Docs       int64    `json:"docs"`
	TextBytes  int64    `json:"text_bytes"`
	InputBytes int64    `json:"input_bytes"` // compressed, as on disk
}

func (c *benchCorpus) paths() []string {
	ps := make([]string, len(c.Files))
	for i, f := range c.Files {
		ps[i] = filepath.Join(c.Root, filepath.FromSlash(f))
	}
	return ps
}

type benchOnce struct {
	once sync.Once
	c    *benchCorpus
	err  error
}

var (
	benchMu      sync.Mutex
	benchCorpora = map[string]*benchOnce{}
)

// benchGet returns the corpus name, generating it with gen on first use in
// this process unless a complete copy from an earlier process is present.
func benchGet(b *testing.B, name string, gen func(dir string) (*benchCorpus, error)) *benchCorpus {
	b.Helper()
	benchMu.Lock()
	o := benchCorpora[name]
	if o == nil {
		o = &benchOnce{}
		benchCorpora[name] = o
	}
	benchMu.Unlock()
	o.once.Do(func() {
		o.c, o.err = benchLoadOrGen(name, gen)
		// Generating leaves hundreds of MB of freed but mapped heap behind
		// (SlimPajamaIngest ran ~1.7x faster right after it): see
		// benchFreshHeap.
		debug.FreeOSMemory()
	})
	if o.err != nil {
		b.Fatalf("benchmark corpus %s: %v", name, o.err)
	}
	return o.c
}

func benchLoadOrGen(name string, gen func(dir string) (*benchCorpus, error)) (*benchCorpus, error) {
	goroot, err := corpusgen.GoRoot()
	if err != nil {
		return nil, err
	}
	// The key covers the generators' source (the test runs in the package
	// directory), so that a change to corpusgen never reuses a stale copy.
	key := sha256.New()
	fmt.Fprintf(key, "%s\x00%s\x00%s\x00%s\x00", benchCacheVersion, runtime.Version(), goroot, name)
	srcs, _ := filepath.Glob(filepath.Join("corpusgen", "*.go"))
	for _, p := range append(srcs, "bench_test.go") {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("generator source: %w", err)
		}
		fmt.Fprintf(key, "%s\x00%d\x00%s", p, len(b), b)
	}
	h := key.Sum(nil)
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("estkit-bench-%s-%s", name, hex.EncodeToString(h[:6])))
	if c, err := benchLoad(dir); err == nil {
		return c, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), ".estkit-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // no-op once renamed
	c, err := gen(tmp)
	if err != nil {
		return nil, err
	}
	c.Root = filepath.Join(tmp, c.RootRel)
	for _, p := range c.paths() {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		c.InputBytes += st.Size()
	}
	meta, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(tmp, ".corpus.json"), meta, 0o644); err != nil {
		return nil, err
	}
	// Copies from other Go versions or generator sources, and an incomplete
	// or damaged copy under this name, are not needed any more.
	stale, _ := filepath.Glob(filepath.Join(os.TempDir(), "estkit-bench-"+name+"-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process may have just put its copy in place.
		if c, lerr := benchLoad(dir); lerr == nil {
			return c, nil
		}
		return nil, err
	}
	c.Root = filepath.Join(dir, c.RootRel)
	return c, nil
}

// benchLoad returns the corpus kept in dir if it is complete.
func benchLoad(dir string) (*benchCorpus, error) {
	meta, err := os.ReadFile(filepath.Join(dir, ".corpus.json"))
	if err != nil {
		return nil, err
	}
	var c benchCorpus
	if err := json.Unmarshal(meta, &c); err != nil {
		return nil, err
	}
	c.Root = filepath.Join(dir, c.RootRel)
	var n int64
	for _, p := range c.paths() {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		n += st.Size()
	}
	if n != c.InputBytes || len(c.Files) == 0 {
		return nil, errors.New("incomplete")
	}
	return &c, nil
}

func benchTextBytes(texts []corpusgen.Text) int64 {
	var n int64
	for _, t := range texts {
		n += int64(len(t.Body))
	}
	return n
}

// benchGenSlimPajama writes total bytes of GOROOT text (repeated) as
// SlimPajama chunk files train/chunk1/example_train_K.jsonl.zst of about
// equal size (real SlimPajama has 59166 such files of ~15 MB compressed).
func benchGenSlimPajama(total int64, files int) func(dir string) (*benchCorpus, error) {
	return func(dir string) (*benchCorpus, error) {
		src, err := corpusgen.GoRootTexts(math.MaxInt64)
		if err != nil {
			return nil, err
		}
		texts := corpusgen.Repeat(src, total)
		c := &benchCorpus{RootRel: "train", Docs: int64(len(texts)), TextBytes: benchTextBytes(texts)}
		var parts [][]corpusgen.Text
		var acc int64
		start := 0
		for i, t := range texts {
			acc += int64(len(t.Body))
			if acc >= c.TextBytes*int64(len(parts)+1)/int64(files) || i == len(texts)-1 {
				parts = append(parts, texts[start:i+1])
				start = i + 1
			}
		}
		var g errgroup.Group
		g.SetLimit(runtime.NumCPU())
		for k, p := range parts {
			rel := fmt.Sprintf("chunk1/example_train_%d.jsonl.zst", k)
			c.Files = append(c.Files, rel)
			g.Go(func() error {
				return corpusgen.WriteSlimPajama(filepath.Join(dir, "train", filepath.FromSlash(rel)), p)
			})
		}
		return c, g.Wait()
	}
}

// benchGenOWT writes total bytes of GOROOT text (repeated) as OpenWebText's
// openwebtext/urlsf_subset00-K_data.xz files.
func benchGenOWT(total int64) func(dir string) (*benchCorpus, error) {
	return func(dir string) (*benchCorpus, error) {
		src, err := corpusgen.GoRootTexts(math.MaxInt64)
		if err != nil {
			return nil, err
		}
		texts := corpusgen.Repeat(src, total)
		paths, err := corpusgen.WriteOWT(dir, texts, benchOWTPerFile, false)
		if err != nil {
			return nil, err
		}
		c := &benchCorpus{RootRel: "openwebtext", Docs: int64(len(texts)), TextBytes: benchTextBytes(texts)}
		for _, p := range paths {
			rel, _ := filepath.Rel(filepath.Join(dir, "openwebtext"), p)
			c.Files = append(c.Files, filepath.ToSlash(rel))
		}
		slices.Sort(c.Files) // ingest's order, which the bound follows too
		return c, nil
	}
}

func benchSlimPajama(b *testing.B) *benchCorpus {
	return benchGet(b, fmt.Sprintf("slimpajama-%dMB", int64(benchSlimBytes)/1e6), benchGenSlimPajama(benchSlimBytes, benchSlimFiles))
}

func benchOWT(b *testing.B) *benchCorpus {
	return benchGet(b, fmt.Sprintf("owt-%dMB", int64(benchOWTBytes)/1e6), benchGenOWT(benchOWTBytes))
}

// benchFreshHeap returns the freed heap to the OS, outside the timer, before
// each iteration of the in-process benchmarks. A run of `estkit ingest` is a
// fresh process whose heap pays page faults as it grows; an iteration that
// follows another (or the corpus generation) in the same process would reuse
// mapped pages instead and measure ~1.3x faster, and a bound run after an
// ingest run would gain the same way.
func benchFreshHeap(b *testing.B) {
	b.StopTimer()
	debug.FreeOSMemory()
	b.StartTimer()
}

// reportMBps reports n bytes per iteration as a throughput metric.
func reportMBps(b *testing.B, n int64, unit string) {
	b.ReportMetric(float64(n)*float64(b.N)/1e6/b.Elapsed().Seconds(), unit)
}

// benchIngest runs ingest.Run on c into a fresh directory per iteration and
// checks that every document was kept.
func benchIngest(b *testing.B, c *benchCorpus, format ingest.Format) {
	b.ReportAllocs()
	b.SetBytes(c.TextBytes) // MB/s is text MB/s
	base := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchFreshHeap(b)
		out := filepath.Join(base, fmt.Sprint(i))
		res, err := ingest.Run(context.Background(), []string{c.Root}, ingest.Options{
			Format: format, OutDir: out, Force: true, Workers: runtime.NumCPU(),
		})
		if err != nil {
			b.Fatal(err)
		}
		if m := res.Manifest; m.Counts.Documents != c.Docs || m.Counts.TextBytes != c.TextBytes {
			b.Fatalf("ingest kept %d documents, %d text bytes; want %d, %d", m.Counts.Documents, m.Counts.TextBytes, c.Docs, c.TextBytes)
		}
		b.StopTimer()
		if err := os.RemoveAll(out); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportMBps(b, c.InputBytes, "input-MB/s")
}

// BenchmarkSlimPajamaIngest: ingest.Run of ~200 MB of SlimPajama text in 4
// chunk files, all CPUs.
func BenchmarkSlimPajamaIngest(b *testing.B) {
	benchIngest(b, benchSlimPajama(b), ingest.FormatSlimPajama)
}

// benchSlimLine is the shape ingest decodes a SlimPajama line into.
type benchSlimLine struct {
	Text *string `json:"text"`
	Meta *struct {
		Set *string `json:"redpajama_set_name"`
	} `json:"meta"`
}

// BenchmarkSlimPajamaBound: the anchor of BenchmarkSlimPajamaIngest on the
// same files: zstd decoding and JSON decoding of every line with the reader
// ingest uses (ingest/jsonline.go), on one goroutine.
func BenchmarkSlimPajamaBound(b *testing.B) {
	benchSlimBound(b, func(line []byte) (int, bool) {
		text, _, err := ingest.DecodeSlimPajamaLine(line)
		return len(text), err == nil
	})
}

// BenchmarkSlimPajamaStdlibJSON: the same bound with encoding/json decoding
// into a struct, the decoder ingest used before it had its own: shows what
// the JSON reader gains.
func BenchmarkSlimPajamaStdlibJSON(b *testing.B) {
	benchSlimBound(b, func(line []byte) (int, bool) {
		var v benchSlimLine
		if json.Unmarshal(line, &v) != nil || v.Text == nil || v.Meta == nil || v.Meta.Set == nil {
			return 0, false
		}
		return len(*v.Text), true
	})
}

// benchSlimBound decodes the SlimPajama corpus on one goroutine with the
// given line decoder.
func benchSlimBound(b *testing.B, decode func([]byte) (int, bool)) {
	c := benchSlimPajama(b)
	b.ReportAllocs()
	b.SetBytes(c.TextBytes)
	var raw int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchFreshHeap(b)
		raw = 0
		var docs, text int64
		for _, p := range c.paths() {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReaderSize(d, 1<<20)
			var buf []byte
			for {
				line, err := br.ReadSlice('\n')
				if err == bufio.ErrBufferFull {
					buf = append(buf[:0], line...)
					for err == bufio.ErrBufferFull {
						line, err = br.ReadSlice('\n')
						buf = append(buf, line...)
					}
					line = buf
				}
				if len(line) > 0 {
					raw += int64(len(line))
					n, ok := decode(line)
					if !ok {
						b.Fatalf("%s: bad line", p)
					}
					docs++
					text += int64(n)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			d.Close()
			f.Close()
		}
		if docs != c.Docs || text != c.TextBytes {
			b.Fatalf("decoded %d documents, %d text bytes; want %d, %d", docs, text, c.Docs, c.TextBytes)
		}
	}
	b.StopTimer()
	reportMBps(b, raw, "jsonl-MB/s")
	reportMBps(b, c.InputBytes, "input-MB/s")
}

// BenchmarkOWTIngest: ingest.Run of ~100 MB of OpenWebText text in
// urlsf_subset00-K_data.xz files, all CPUs.
func BenchmarkOWTIngest(b *testing.B) {
	benchIngest(b, benchOWT(b), ingest.FormatOWT)
}

// BenchmarkOWTBound: the anchor of BenchmarkOWTIngest on the same files:
// github.com/ulikunitz/xz decoding (the decoder ingest uses) on one
// goroutine. MB/s is of text; xz-out-MB/s of decompressed bytes (the tar).
func BenchmarkOWTBound(b *testing.B) {
	c := benchOWT(b)
	b.ReportAllocs()
	b.SetBytes(c.TextBytes)
	var raw int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchFreshHeap(b)
		raw = 0
		for _, p := range c.paths() {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			xr, err := xz.NewReader(bufio.NewReaderSize(f, 1<<16))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, xr)
			if err != nil {
				b.Fatalf("%s: %v", p, err)
			}
			raw += n
			f.Close()
		}
	}
	b.StopTimer()
	reportMBps(b, raw, "xz-out-MB/s")
	reportMBps(b, c.InputBytes, "input-MB/s")
}

// benchRSSEnv, when set in this test binary's environment, makes it a small
// intermediate process: it runs the command named by the variable (a JSON
// array), passes its exit status on, and prints the command's peak RSS.
// Linux folds the RSS high-water mark of the address space a process leaves
// at exec into its ru_maxrss, and os/exec starts children with
// CLONE_VM|CLONE_VFORK, so a child started directly by the benchmark process
// would report at least the benchmark's own RSS (hundreds of MB of corpus).
// Started from this small process instead, the figure is estkit's own (or
// the intermediate's ~20 MB, whichever is larger).
const benchRSSEnv = "ESTKIT_BENCH_RSS_EXEC"

func init() {
	spec := os.Getenv(benchRSSEnv)
	if spec == "" {
		return
	}
	var argv []string
	if err := json.Unmarshal([]byte(spec), &argv); err != nil || len(argv) == 0 {
		fmt.Fprintf(os.Stderr, "%s: want a JSON array of arguments: %v\n", benchRSSEnv, err)
		os.Exit(2)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, benchRSSEnv+"=") })
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ru != nil {
		fmt.Printf("\nmaxrss-kib %d\n", ru.Maxrss) // KiB on Linux
	}
	os.Exit(cmd.ProcessState.ExitCode())
}

// benchPeakRSS runs argv through the intermediate process and returns the
// peak RSS of argv's process in KiB.
func benchPeakRSS(argv ...string) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	spec, _ := json.Marshal(argv)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), benchRSSEnv+"="+string(spec))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %v\n%s", argv, err, out)
	}
	i := bytes.LastIndex(out, []byte("\nmaxrss-kib "))
	if i < 0 {
		return 0, fmt.Errorf("%v: no peak RSS reported (not Linux?)\n%s", argv, out)
	}
	var kib int64
	if _, err := fmt.Sscanf(string(out[i+1:]), "maxrss-kib %d", &kib); err != nil {
		return 0, err
	}
	return kib, nil
}

var benchBin struct {
	once sync.Once
	path string
	err  error
}

// benchBinary builds cmd/estkit once per process, into
// $TMPDIR/estkit-bench-bin/estkit (replaced atomically, so that the
// directory does not grow with every run).
func benchBinary() (string, error) {
	benchBin.once.Do(func() {
		dir := filepath.Join(os.TempDir(), "estkit-bench-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			benchBin.err = err
			return
		}
		tmp, err := os.CreateTemp(dir, ".estkit-")
		if err != nil {
			benchBin.err = err
			return
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		build := exec.Command("go", "build", "-o", tmp.Name(), "github.com/estkit/estkit/cmd/estkit")
		if out, err := build.CombinedOutput(); err != nil {
			benchBin.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		benchBin.path = filepath.Join(dir, "estkit")
		benchBin.err = os.Rename(tmp.Name(), benchBin.path)
	})
	return benchBin.path, benchBin.err
}

// benchTwice makes a corpus of c's files twice over, as chunk1/ and chunk2/
// (hard links where the file system allows), without generating anything.
func benchTwice(c *benchCorpus) func(dir string) (*benchCorpus, error) {
	return func(dir string) (*benchCorpus, error) {
		d := &benchCorpus{RootRel: "train", Docs: 2 * c.Docs, TextBytes: 2 * c.TextBytes}
		for _, chunk := range []string{"chunk1", "chunk2"} {
			for _, f := range c.Files {
				rel := chunk + "/" + path.Base(f)
				dst := filepath.Join(dir, "train", filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return nil, err
				}
				src := filepath.Join(c.Root, filepath.FromSlash(f))
				if os.Link(src, dst) != nil {
					if err := corpusgen.Copy(dst, src); err != nil {
						return nil, err
					}
				}
				d.Files = append(d.Files, rel)
			}
		}
		return d, nil
	}
}

// BenchmarkIngestPeakRSS runs the estkit binary on SlimPajama inputs of three
// sizes (4 or 8 files) and reports the child's peak resident set size: it
// should level off rather than grow with the input (docs/ARCHITECTURE.md
// bounds memory in flight by the number of workers, not the input size).
func BenchmarkIngestPeakRSS(b *testing.B) {
	bin, err := benchBinary()
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int64{benchSlimSmall, benchSlimBytes, 2 * benchSlimBytes} {
		b.Run(fmt.Sprintf("text=%dMB", size/1e6), func(b *testing.B) {
			var c *benchCorpus
			switch size {
			case benchSlimBytes:
				c = benchSlimPajama(b)
			case 2 * benchSlimBytes:
				c = benchGet(b, fmt.Sprintf("slimpajama-%dMB", size/1e6), benchTwice(benchSlimPajama(b)))
			default:
				c = benchGet(b, fmt.Sprintf("slimpajama-%dMB", size/1e6), benchGenSlimPajama(size, benchSlimFiles))
			}
			b.SetBytes(c.TextBytes)
			base := b.TempDir()
			var peak int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := filepath.Join(base, fmt.Sprint(i))
				kib, err := benchPeakRSS(bin, "--quiet", "ingest", "--format", "slimpajama", "--force", "--out", out, c.Root)
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, kib)
				b.StopTimer()
				os.RemoveAll(out)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
		})
	}
}
