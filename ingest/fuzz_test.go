package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/estkit/estkit/ingest/corpusgen"
)

var sentinels = []error{ErrCorrupt, ErrInvalidJSON, ErrMissingField, ErrInvalidUTF8, ErrUnsafePath, ErrEmptyFile, ErrTooLarge}

// fuzzRead runs one reader over data and checks the invariants every reader
// keeps on any input: documents are valid UTF-8 within the limit with a
// correct length and hash; every fault is an *InputError naming the file and
// wrapping a sentinel; read counts add up; and our own code never panics
// (allowPanic admits a third-party decoder's panic, which runUnit or the
// parquet reader turned into a counted rejection).
func fuzzRead(t *testing.T, name string, f Format, data []byte, o Options, allowPanic bool) {
	p := filepath.Join(t.TempDir(), name)
	write(t, p, data)
	in := inputFor(t, p, f)
	o.OnError, o.OutDir = OnErrorSkip, "unused"
	docs, rejects, read, filtered, err := readAllCounted(in, &o)
	if err != nil {
		t.Fatalf("reader returned a non-data error: %v", err)
	}
	if read != int64(len(docs)+len(rejects))+filtered {
		t.Fatalf("read %d != %d documents + %d rejections + %d filtered", read, len(docs), len(rejects), filtered)
	}
	for i, d := range docs {
		if !utf8.ValidString(d.Text) || d.Text == "" || int64(len(d.Text)) > o.MaxDocBytes || d.Lineage.Bytes != int64(len(d.Text)) || d.Lineage.File != in.Rel {
			t.Fatalf("document %d breaks an invariant: %+v", i, d.Lineage)
		}
	}
	for _, e := range rejects {
		if e.File != in.Rel {
			t.Fatalf("rejection names file %q, want %q: %v", e.File, in.Rel, e)
		}
		known := false
		for _, s := range sentinels {
			known = known || errors.Is(e, s)
		}
		if !known {
			t.Fatalf("rejection wraps no sentinel: %v", e)
		}
		if !allowPanic && strings.Contains(e.Error(), "panic") {
			t.Fatalf("panic in our code: %v", e)
		}
	}
}

func seedTexts() []corpusgen.Text {
	return []corpusgen.Text{{Name: "a", Body: "hello world\n"}, {Name: "b", Body: "é \u2581 \"quoted\" \\ back"}, {Name: "c", Body: "x"}}
}

func FuzzJSONL(f *testing.F) {
	ts := seedTexts()
	f.Add(jsonlOf(ts), false)
	f.Add([]byte(`{"text": "a", "meta": {"redpajama_set_name": "RedPajamaC4"}}`+"\n"+`{"text": 1}`), true)
	f.Add([]byte("{\"text\": \"caf\xe9\"}\n{\"body\": \"x\"}\n{bad\n\n"), false)
	f.Add([]byte(`{"text": "\ud800 lone surrogate"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, slim bool) {
		if len(data) == 0 {
			return
		}
		format := FormatJSONL
		if slim {
			format = FormatSlimPajama
		}
		fuzzRead(t, "f.jsonl", format, data, Options{MaxDocBytes: 1 << 10, ExcludeSets: []string{"RedPajamaGithub"}}, false)
	})
}

func FuzzJSONLZstd(f *testing.F) {
	z := corpusgen.Zstd(jsonlOf(seedTexts()))
	f.Add(z)
	f.Add(z[:len(z)/2])
	f.Add(corpusgen.Zstd([]byte("{\"text\": \"a\"}\n{broken")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzRead(t, "f.jsonl.zst", FormatSlimPajama, data, Options{MaxDocBytes: 1 << 10}, false)
	})
}

func FuzzJSONLGzip(f *testing.F) {
	g := corpusgen.Gzip(jsonlOf(seedTexts()))
	f.Add(g)
	f.Add(g[:len(g)-5])
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzRead(t, "f.jsonl.gz", FormatJSONL, data, Options{MaxDocBytes: 1 << 10}, false)
	})
}

func FuzzOWT(f *testing.F) {
	ts := seedTexts()
	inner := corpusgen.OWTInner(ts, 0)
	f.Add(inner)
	f.Add(inner[:len(inner)*3/4])
	f.Add(corpusgen.Tar([]corpusgen.Member{{Name: "x/urlsf_subset00-1_data.xz", Body: inner}, {Name: "../e.txt", Body: []byte("e")}, {Name: "r.bin", Body: []byte{0}}}))
	f.Add(corpusgen.XZ(corpusgen.Tar([]corpusgen.Member{{Name: "a.txt", Body: []byte("a")}, {Name: "n.tar", Body: corpusgen.Tar([]corpusgen.Member{{Name: "b.txt", Body: []byte("b")}})}})))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzRead(t, "f.xz", FormatOWT, data, Options{MaxDocBytes: 1 << 12}, false)
	})
}

func FuzzParquet(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "s.parquet")
	if err := corpusgen.WriteStarCoder(p, corpusgen.StarCoderRows(seedTexts()), 2); err != nil {
		f.Fatal(err)
	}
	b := readFileT(f, p)
	f.Add(b, true)
	f.Add(b[:len(b)-10], true)
	p = filepath.Join(dir, "t.parquet")
	if err := corpusgen.WriteTextParquet(p, "text", seedTexts(), 1); err != nil {
		f.Fatal(err)
	}
	f.Add(readFileT(f, p), false)
	f.Fuzz(func(t *testing.T, data []byte, star bool) {
		if len(data) == 0 {
			return
		}
		format := FormatParquet
		if star {
			format = FormatStarCoder
		}
		// arrow-go's decoder may panic on damaged files; the reader turns that
		// into a counted rejection, which is what is checked here.
		fuzzRead(t, "f.parquet", format, data, Options{MaxDocBytes: 1 << 12}, true)
	})
}

func FuzzText(f *testing.F) {
	f.Add([]byte("plain text"))
	f.Add([]byte("caf\xe9"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzRead(t, "f.txt", FormatText, data, Options{MaxDocBytes: 64}, false)
	})
}

// FuzzLineReader checks the bounded line reader against bytes.Split.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), 2)
	f.Add([]byte("\n\n"), 0)
	f.Add(bytes.Repeat([]byte("x"), 3000), 100)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		want := bytes.Split(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] == '\n' {
			want = want[:len(want)-1]
		}
		if len(data) == 0 {
			want = nil
		}
		lr := newLineReader(bytes.NewReader(data), max)
		var off int64
		for i := 0; ; i++ {
			line, num, o, tooLong, err := lr.next()
			if err != nil {
				if i != len(want) {
					t.Fatalf("ended after %d lines, want %d (err %v)", i, len(want), err)
				}
				return
			}
			if i >= len(want) || num != int64(i+1) || o != off {
				t.Fatalf("line %d: num %d offset %d (want offset %d)", i, num, o, off)
			}
			if tooLong != (len(want[i]) > max) || (!tooLong && !bytes.Equal(line, want[i])) {
				t.Fatalf("line %d: got %q tooLong %v, want %q", i, line, tooLong, want[i])
			}
			off += int64(len(want[i])) + 1
		}
	})
}

func readFileT(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestXZDictCap(t *testing.T) {
	b := corpusgen.XZ([]byte("hello"))
	if got := xzDictCap(b); got != 64<<10 {
		t.Fatalf("dictionary of corpusgen's writer: %d, want 64 KiB", got)
	}
	// Claim a 1 GiB dictionary: rejected before any allocation.
	h := append([]byte{}, b...)
	hdrSize := (int(h[12]) + 1) * 4
	blk := h[12 : 12+hdrSize]
	for i := 2; i+2 < len(blk); i++ {
		if blk[i] == 0x21 && blk[i+1] == 1 {
			blk[i+2] = 36 // 2 << (18+11) = 1 GiB
			break
		}
	}
	if got := xzDictCap(h); got != 1<<30 {
		t.Fatalf("patched dictionary: %d", got)
	}
	p := filepath.Join(t.TempDir(), "big-dict.xz")
	write(t, p, h)
	_, rejects, _, err := readAll(inputFor(t, p, FormatOWT), &Options{OutDir: "x", OnError: OnErrorSkip})
	if err != nil || len(rejects) != 1 || !errors.Is(rejects[0], ErrCorrupt) || !strings.Contains(rejects[0].Error(), "dictionary") {
		t.Fatalf("rejects %v err %v", rejects, err)
	}
}

// FuzzDocShard: a document shard whose record batches (the messages
// between the schema and the footer) are damaged anywhere opens, then
// every batch reads with an error naming the file, or every document of it
// decodes (DocumentAt, as inspect and the shard builder read them), without
// a panic or an allocation the damage asked for. Damage to the schema or
// the footer is what the manifest's sha256 catches before Arrow reads a
// file (arrow-go allocates what damaged metadata claims there: see
// shards' TestBuildDamagedDocShard).
func FuzzDocShard(f *testing.F) {
	dir := f.TempDir()
	in := filepath.Join(dir, "in")
	if err := corpusgen.WriteJSONL(filepath.Join(in, "a.jsonl"), "text", seedTexts()); err != nil {
		f.Fatal(err)
	}
	var origs [][]byte
	for _, c := range []Compression{CompressNone, CompressZstd} {
		out := filepath.Join(dir, string(c))
		if _, err := Run(context.Background(), []string{in}, Options{Format: FormatJSONL, Corpus: "c", OutDir: out, Compression: c}); err != nil {
			f.Fatal(err)
		}
		m, err := ReadManifest(out)
		if err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out, m.Outputs[0].Name))
		if err != nil {
			f.Fatal(err)
		}
		origs = append(origs, b)
	}
	// the batches lie after the magic (8 bytes) and the schema message
	// (continuation, length, metadata), and before the footer, its length
	// and the closing magic
	batches := func(b []byte) (int, int) {
		from := 16 + int(binary.LittleEndian.Uint32(b[12:16]))
		to := len(b) - 10 - int(binary.LittleEndian.Uint32(b[len(b)-10:]))
		return from, to
	}
	f.Add(uint8(0), uint32(0), []byte{})
	f.Add(uint8(1), uint32(40), []byte{0xff})
	f.Add(uint8(1), uint32(200), []byte{0x10, 0, 0, 0, 0x80})
	f.Add(uint8(0), uint32(7), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	// The seeds' buffers are bytes long: a damaged size field is refused
	// at 16 MiB here rather than at the format's 1 GiB, which keeps each
	// run quick (the refusal is the same code).
	defer func(l int) { readPool.Limit = l }(readPool.Limit)
	readPool.Limit = 16 << 20
	f.Fuzz(func(t *testing.T, which uint8, at uint32, patch []byte) {
		data := slices.Clone(origs[int(which)%len(origs)])
		from, to := batches(data)
		for i, x := range patch {
			data[from+(int(at)+i)%(to-from)] ^= x
		}
		p := filepath.Join(t.TempDir(), "docs.arrow")
		write(t, p, data)
		err := ScanShard(p, func(rec arrow.RecordBatch) (bool, error) {
			for i := range int(rec.NumRows()) {
				DocumentAt(rec, i)
			}
			return true, nil
		})
		if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			t.Fatalf("error %v is neither ErrCorrupt nor ErrVersion", err)
		}
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Fatalf("error %v does not name the file", err)
		}
	})
}

// TestReadDocumentDamaged: inspect --doc on a document shard changed after
// ingest is ErrCorrupt naming the file, before Arrow reads it.
func TestReadDocumentDamaged(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := corpusgen.WriteJSONL(filepath.Join(in, "a.jsonl"), "text", seedTexts()); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if _, err := Run(context.Background(), []string{in}, Options{Format: FormatJSONL, Corpus: "c", OutDir: out}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDocument(out, m, 0); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, m.Outputs[0].Name)
	b, _ := os.ReadFile(p)
	b[len(b)-20] ^= 1
	write(t, p, b)
	if _, err := ReadDocument(out, m, 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Fatalf("damaged shard: %v", err)
	}
}
