package shards

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/tokenize"
)

// docSet ingests n bytes of GOROOT text (offset by skip documents) as a
// JSON-lines corpus named corpus and returns the document shard directory.
func docSet(t testing.TB, corpus string, skip int, n int64) string {
	t.Helper()
	texts, err := corpusgen.GoRootTexts(1 << 40)
	if err != nil {
		t.Fatal(err)
	}
	texts = texts[skip%len(texts):]
	var pick []corpusgen.Text
	var size int64
	for _, x := range texts {
		if size >= n {
			break
		}
		pick = append(pick, x)
		size += int64(len(x.Body))
	}
	root := t.TempDir()
	if err := corpusgen.WriteJSONL(filepath.Join(root, "in", corpus+".jsonl"), "text", pick); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "docs")
	// small shards and batches: several files and record batches per set
	_, err = ingest.Run(context.Background(), []string{filepath.Join(root, "in")},
		ingest.Options{Format: ingest.FormatJSONL, Corpus: corpus, OutDir: out, ShardBytes: n / 3})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gpt2(t testing.TB) *tokenize.Tokenizer {
	tok, err := tokenize.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func build(t testing.TB, docs []string, o Options) *Result {
	t.Helper()
	if o.OutDir == "" && o.CacheDir == "" {
		o.OutDir = filepath.Join(t.TempDir(), "tok")
	}
	if o.ValFraction == 0 {
		o.ValFraction = 0.05
	}
	res, err := Build(context.Background(), gpt2(t), docs, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readAll(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".arrow") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = b
		}
	}
	return out
}

// TestBuildTokensMatchTokenizer: every document's ids in the shards are the
// tokenizer's ids of its text plus the separator, in input order, and the
// lineage leads back to the document's text.
func TestBuildTokensMatchTokenizer(t *testing.T) {
	docs := docSet(t, "go", 0, 2<<20)
	res := build(t, []string{docs}, Options{EOS: true, ShardTokens: 100_000})
	m := res.Manifest
	if m.Splits[Train].Documents == 0 || m.Splits[Val].Documents == 0 || len(m.Splits[Train].Files) < 2 {
		t.Fatalf("splits: %+v %+v", m.Splits[Train], m.Splits[Val])
	}
	dm, err := ingest.ReadManifest(docs)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Splits[Train].Documents + m.Splits[Val].Documents; got != dm.Counts.Documents {
		t.Fatalf("%d documents in token shards, %d in document shards", got, dm.Counts.Documents)
	}
	set, err := Open(res.Dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	tok := gpt2(t)
	for _, split := range []string{Train, Val} {
		st, err := set.Stream(split)
		if err != nil {
			t.Fatal(err)
		}
		var pos int64
		var k int64
		err = st.Documents(func(ids []int32) error {
			spans, err := st.Spans(pos, int64(len(ids)))
			if err != nil || len(spans) != 1 || spans[0].Begin != 0 || spans[0].End != int64(len(ids)) {
				t.Fatalf("%s doc %d: spans %+v %v", split, k, spans, err)
			}
			s := spans[0]
			d, err := readDocAt(s.DocSet, s.DocFile, s.DocRow)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := tok.Encode(d.Text, tokenize.EncodeOptions{EOS: true})
			if !slices.Equal(toU32(ids), want) {
				t.Fatalf("%s doc %d (%s): ids differ from the tokenizer's", split, k, d.Lineage.File)
			}
			pos += int64(len(ids))
			k++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if k != st.Docs || pos != st.Tokens {
			t.Fatalf("%s: %d documents, %d tokens; manifest %d, %d", split, k, pos, st.Docs, st.Tokens)
		}
	}
}

func toU32(a []int32) []uint32 {
	u := make([]uint32, len(a))
	for i, v := range a {
		u[i] = uint32(v)
	}
	return u
}

func readDocAt(dir, file string, row int64) (*ingest.Document, error) {
	var doc *ingest.Document
	err := ingest.ScanShard(filepath.Join(dir, file), func(rec arrow.RecordBatch) (bool, error) {
		if row >= rec.NumRows() {
			row -= rec.NumRows()
			return true, nil
		}
		d := ingest.DocumentAt(rec, int(row))
		doc = &d
		return false, nil
	})
	if err == nil && doc == nil {
		err = errors.New("row beyond the file")
	}
	return doc, err
}

// TestBuildDeterministicAndReused: the same files whatever the worker
// count (and so the number of decoder goroutines: 1, 1 and 3 here, over
// several document files); a second build with the same inputs does no
// work, a different tokenizer or option does.
func TestBuildDeterministicAndReused(t *testing.T) {
	docs := docSet(t, "go", 3, 1<<20)
	a := build(t, []string{docs}, Options{Workers: 1, ShardTokens: 50_000})
	fa := readAll(t, a.Dir)
	if len(fa) < 2 {
		t.Fatalf("%d files", len(fa))
	}
	for _, w := range []int{4, 9} {
		b := build(t, []string{docs}, Options{Workers: w, ShardTokens: 50_000})
		fb := readAll(t, b.Dir)
		if len(fa) != len(fb) {
			t.Fatalf("%d vs %d files", len(fa), len(fb))
		}
		for n, x := range fa {
			if !slices.Equal(x, fb[n]) {
				t.Fatalf("%s differs between 1 and %d workers", n, w)
			}
		}
		if a.Manifest.Key != b.Manifest.Key {
			t.Fatal("keys differ")
		}
	}
	cache := t.TempDir()
	c1 := build(t, []string{docs}, Options{CacheDir: cache})
	c2 := build(t, []string{docs}, Options{CacheDir: cache})
	if c1.Reused || !c2.Reused || c1.Dir != c2.Dir || filepath.Base(c1.Dir) != c1.Manifest.Key {
		t.Fatalf("cache: %v %v %s %s", c1.Reused, c2.Reused, c1.Dir, c2.Dir)
	}
	c3 := build(t, []string{docs}, Options{CacheDir: cache, ValSeed: 9})
	if c3.Reused || c3.Dir == c1.Dir {
		t.Fatal("another val seed reused the set")
	}
	llama := filepath.Join(os.Getenv("ESTKIT_REFS"), "llama2.model")
	if os.Getenv("ESTKIT_REFS") != "" {
		tok, err := tokenize.Load(llama)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Build(context.Background(), tok, []string{docs}, Options{CacheDir: cache, BOS: true})
		if err != nil || r.Reused || r.Dir == c1.Dir || r.Manifest.Tokenizer.BOS != 1 {
			t.Fatalf("another tokenizer: %+v %v", r, err)
		}
	}
}

// TestBuildRerunAfterFailure: a build that fails midway (here: cancelled)
// leaves no visible output, and the next run completes with the same files
// as an undisturbed one.
func TestBuildRerunAfterFailure(t *testing.T) {
	docs := docSet(t, "go", 5, 1<<20)
	out := filepath.Join(t.TempDir(), "tok")
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	tok := gpt2(t)
	before := runtime.NumGoroutine()
	_, err := Build(ctx, tok, []string{docs}, Options{OutDir: out, ShardTokens: 20_000, Workers: 9, Progress: func(int64, int64) {
		if calls++; calls == 1 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled build: %v", err)
	}
	// the reader, its decoders and the workers are gone
	for wait := 0; runtime.NumGoroutine() > before; wait++ {
		if wait == 200 {
			t.Fatalf("%d goroutines after a cancelled build, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := ReadManifest(out); err == nil {
		t.Fatal("a manifest after a failed build")
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".arrow") || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("left behind: %s", e.Name())
		}
	}
	a := build(t, []string{docs}, Options{OutDir: out, ShardTokens: 20_000})
	b := build(t, []string{docs}, Options{ShardTokens: 20_000})
	if a.Reused || a.Manifest.Key != b.Manifest.Key {
		t.Fatal("rerun")
	}
	fa, fb := readAll(t, a.Dir), readAll(t, b.Dir)
	for n, x := range fb {
		if !slices.Equal(x, fa[n]) {
			t.Fatalf("%s differs from an undisturbed build", n)
		}
	}
}

// TestOpenFaults: a missing, truncated or altered file, another manifest
// version, and inputs that are not document shards each fail with an error
// naming what is wrong.
func TestOpenFaults(t *testing.T) {
	docs := docSet(t, "go", 7, 512<<10)
	res := build(t, []string{docs}, Options{})
	name := res.Manifest.Splits[Train].Files[0].Name
	p := filepath.Join(res.Dir, name)
	orig, _ := os.ReadFile(p)
	check := func(what string, verify bool, want error, mention string) {
		t.Helper()
		s, err := Open(res.Dir, verify)
		if err == nil {
			s.Close()
		}
		if err == nil || !errors.Is(err, want) || !strings.Contains(err.Error(), mention) {
			t.Errorf("%s: got %v, want %v naming %q", what, err, want, mention)
		}
	}
	os.WriteFile(p, orig[:len(orig)/2], 0o644)
	check("truncated", false, ErrCorrupt, name)
	flipped := slices.Clone(orig)
	flipped[len(flipped)/2] ^= 1
	os.WriteFile(p, flipped, 0o644)
	check("altered", true, ErrCorrupt, name)
	os.Remove(p)
	check("missing", false, os.ErrNotExist, name)
	os.WriteFile(p, orig, 0o644)
	if s, err := Open(res.Dir, true); err != nil {
		t.Fatalf("restored: %v", err)
	} else {
		s.Close()
	}
	mp := filepath.Join(res.Dir, ManifestName)
	mb, _ := os.ReadFile(mp)
	os.WriteFile(mp, []byte(strings.Replace(string(mb), `"version": 2`, `"version": 7`, 1)), 0o644)
	check("manifest version", false, ErrVersion, "version 7")
	os.WriteFile(mp, mb, 0o644)
	if _, err := Build(context.Background(), gpt2(t), []string{res.Dir}, Options{OutDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a document shard set") {
		t.Errorf("token shards as input: %v", err)
	}
}

// FuzzManifest: any bytes parse or fail with an error.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"schema":"estkit.tokshards","version":1,"key":"` + strings.Repeat("ab", 32) + `","tokenizer":{"token_bits":16},"splits":{"train":{"files":[{"name":"a","tokens":3,"documents":1}],"documents":1,"tokens":3}}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err == nil && m.Schema != ManifestSchema {
			t.Fatal("accepted another schema")
		}
	})
}

// TestHelperShardProcess is the child of TestKilledBuild.
func TestHelperShardProcess(t *testing.T) {
	spec := os.Getenv("ESTKIT_SHARD_CHILD")
	if spec == "" {
		t.Skip("child process of TestKilledBuild")
	}
	out, docs, _ := strings.Cut(spec, "|")
	Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: out, ShardTokens: 40_000, ValFraction: 0.05, Workers: 2})
}

// TestKilledBuild kills estkit shard with SIGKILL at several moments: what
// is visible afterwards is either no set or a complete, verified one, and a
// re-run completes with the same files as an undisturbed build.
func TestKilledBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	docs := docSet(t, "go", 13, 3<<20)
	start := time.Now()
	ref := build(t, []string{docs}, Options{ShardTokens: 40_000})
	full := time.Since(start)
	out := filepath.Join(t.TempDir(), "out")
	build(t, []string{docs}, Options{OutDir: out, ShardTokens: 90_000}) // an older set of other options
	for _, frac := range []float64{0.1, 0.3, 0.5, 0.7, 0.9} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperShardProcess$")
		cmd.Env = append(os.Environ(), "ESTKIT_SHARD_CHILD="+out+"|"+docs)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(frac * float64(full+100*time.Millisecond)))
		cmd.Process.Kill()
		cmd.Wait()
		if _, err := os.Stat(filepath.Join(out, ManifestName)); err == nil {
			s, err := Open(out, true)
			if err != nil {
				t.Fatalf("after a kill at %.0f%%, the visible set is damaged: %v", 100*frac, err)
			}
			s.Close()
		}
	}
	res := build(t, []string{docs}, Options{OutDir: out, ShardTokens: 40_000})
	if res.Manifest.Key != ref.Manifest.Key {
		t.Fatal("keys differ")
	}
	want, got := readAll(t, ref.Dir), readAll(t, out)
	if len(want) != len(got) {
		var names []string
		for n := range got {
			if _, ok := want[n]; !ok {
				names = append(names, n)
			}
		}
		t.Fatalf("%d files after the re-run, want %d (extra: %v)", len(got), len(want), names)
	}
	for n, b := range want {
		if !slices.Equal(b, got[n]) {
			t.Fatalf("%s differs after kills and a re-run", n)
		}
	}
}

// FuzzShardFile: a token shard file with any contents opens with an error
// or reads without panicking or allocating without bound.
func FuzzShardFile(f *testing.F) {
	docs := docSet(f, "go", 17, 6<<10) // a small file: the mutator is slow on large inputs
	res := build(f, []string{docs}, Options{})
	name := res.Manifest.Splits[Train].Files[0].Name
	orig, err := os.ReadFile(filepath.Join(res.Dir, name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(orig)
	f.Add(orig[:len(orig)-9])
	f.Add([]byte("ARROW1\x00\x00"))
	file := res.Manifest.Splits[Train].Files[0]
	f.Fuzz(func(t *testing.T, data []byte) {
		m := *res.Manifest
		fl := file
		fl.Size = int64(len(data))
		m.Splits = map[string]*Split{Train: {Files: []File{fl}, Documents: fl.Documents, Tokens: fl.Tokens}}
		s := &Set{Dir: "fuzz", Manifest: &m, streams: map[string]*Stream{}, fromBytes: data}
		st, err := s.openStream(Train, m.Splits[Train])
		if err != nil {
			return
		}
		s.streams[Train] = st
		buf := make([]int32, min(st.Tokens, 1000))
		if err := st.Read(buf, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Spans(0, int64(len(buf))); err != nil {
			t.Fatal(err)
		}
		st.Documents(func([]int32) error { return nil })
	})
}

// TestBuildDamagedDocShard: a document shard whose bytes changed after
// ingest fails the build with ingest's ErrCorrupt naming the file, before
// Arrow reads its metadata (a damaged size there can claim terabytes).
func TestBuildDamagedDocShard(t *testing.T) {
	docs := docSet(t, "go", 7, 256<<10)
	m, err := ingest.ReadManifest(docs)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(docs, m.Outputs[len(m.Outputs)-1].Name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-20] ^= 0x40 // inside the footer
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: t.TempDir()})
	if !errors.Is(err, ingest.ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Fatalf("damaged document shard: %v", err)
	}
	t.Log(err)
}
