package shards

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/tokenize"
)

// streamIDs returns a split's ids document by document (Documents, not
// Read: the reference the exports are compared with is read by another
// path than the one they are written by).
func streamIDs(t *testing.T, st *Stream) (flat []int32, docs [][]int32) {
	t.Helper()
	err := st.Documents(func(ids []int32) error {
		flat = append(flat, ids...)
		docs = append(docs, slices.Clone(ids))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return flat, docs
}

// The readers below are written from the formats' descriptions (nanoGPT's
// np.memmap(dtype=np.uint16), llm.c's dataloader.h), not from Export.

func readUint16s(t *testing.T, b []byte) []int32 {
	t.Helper()
	if len(b)%2 != 0 {
		t.Fatalf("%d bytes: not whole uint16s", len(b))
	}
	out := make([]int32, len(b)/2)
	for i := range out {
		out[i] = int32(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
	}
	return out
}

// readLLMC reads an llm.c token file as llmc/dataloader.h does: 256 int32
// of header, magic 20240520, version 1, the token count, and a file size
// of exactly the header and two bytes per token; the rest of the header is
// zeros as write_datafile leaves it.
func readLLMC(t *testing.T, b []byte) []int32 {
	t.Helper()
	if len(b) < 1024 {
		t.Fatalf("llm.c file of %d bytes: shorter than its header", len(b))
	}
	h := make([]int32, 256)
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	if h[0] != 20240520 || h[1] != 1 {
		t.Fatalf("llm.c header: magic %d version %d, want 20240520 1", h[0], h[1])
	}
	if want := 1024 + 2*int64(h[2]); h[2] <= 0 || int64(len(b)) != want {
		t.Fatalf("llm.c header counts %d tokens: file of %d bytes, want %d", h[2], len(b), want)
	}
	for i, v := range h[3:] {
		if v != 0 {
			t.Fatalf("llm.c header int %d is %d, want 0", i+3, v)
		}
	}
	return readUint16s(t, b[1024:])
}

func readInt32s(t *testing.T, b []byte) []int32 {
	t.Helper()
	if len(b)%4 != 0 {
		t.Fatalf("%d bytes: not whole int32s", len(b))
	}
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func readJSONL(t *testing.T, b []byte) [][]int32 {
	t.Helper()
	var docs [][]int32
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var ids []int32
		if err := json.Unmarshal(sc.Bytes(), &ids); err != nil {
			t.Fatalf("jsonl line %d: %v", len(docs)+1, err)
		}
		docs = append(docs, ids)
	}
	return docs
}

// sameIDs fails naming the first position where got and want differ.
func sameIDs(t *testing.T, what string, got, want []int32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d tokens, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: token %d is %d, want %d", what, i, got[i], want[i])
		}
	}
}

// TestExportFormats writes both splits of a GPT-2 set (several files,
// uncompressed and zstd, a train split of several export chunks) in every
// format to a file and reads each back with the readers above.
func TestExportFormats(t *testing.T) {
	docs := docSet(t, "go", 0, 1<<20)
	for _, comp := range []string{"none", "zstd"} {
		res := build(t, []string{docs}, Options{EOS: true, ShardTokens: 60_000, Compression: comp})
		set, err := Open(res.Dir, false)
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		for _, split := range []string{Train, Val} {
			st, err := set.Stream(split)
			if err != nil {
				t.Fatal(err)
			}
			if split == Train && st.Tokens <= exportChunk {
				t.Fatalf("train split of %d tokens: want more than one export chunk (%d)", st.Tokens, exportChunk)
			}
			want, wantDocs := streamIDs(t, st)
			for _, f := range ExportFormats {
				p := filepath.Join(out, comp, split+"."+f) // the directory is created
				if err := st.ExportFile(context.Background(), p, f); err != nil {
					t.Fatalf("%s %s %s: %v", comp, split, f, err)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				what := comp + " " + split + " " + f
				switch f {
				case FormatNanoGPT:
					sameIDs(t, what, readUint16s(t, b), want)
				case FormatLLMC:
					sameIDs(t, what, readLLMC(t, b), want)
				case FormatInt32:
					sameIDs(t, what, readInt32s(t, b), want)
				case FormatJSONL:
					got := readJSONL(t, b)
					if len(got) != len(wantDocs) {
						t.Fatalf("%s: %d lines, want %d documents", what, len(got), len(wantDocs))
					}
					for i := range got {
						sameIDs(t, fmt.Sprintf("%s document %d", what, i), got[i], wantDocs[i])
					}
				}
				// the same bytes to a writer
				var buf bytes.Buffer
				if err := st.Export(context.Background(), &buf, f); err != nil || !bytes.Equal(buf.Bytes(), b) {
					t.Fatalf("%s: Export to a writer differs from ExportFile (%v)", what, err)
				}
			}
		}
		noTemps(t, filepath.Join(out, comp))
		set.Close()
	}
}

// noTemps fails if dir holds a temporary file of durable's.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), durable.TmpPrefix) {
			t.Fatalf("%s left in %s", e.Name(), dir)
		}
	}
}

// byteLevelTable is GPT-2's map from bytes to the characters byte-level
// BPE vocabularies spell them with (printable Latin-1 as itself, the rest
// from U+0100 on).
func byteLevelTable() [256]rune {
	var tab [256]rune
	next := rune(256)
	for b := range 256 {
		switch {
		case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE && b <= 0xFF:
			tab[b] = rune(b)
		default:
			tab[b] = next
			next++
		}
	}
	return tab
}

// wideTokenizer writes a byte-level tokenizer.json of our own whose byte
// tokens have ids 70000 to 70255 and whose <|endoftext|> is 128255: a
// vocabulary of 128256 ids, Llama 3's size.
func wideTokenizer(t *testing.T) *tokenize.Tokenizer {
	t.Helper()
	tab := byteLevelTable()
	vocab := map[string]int{"<|endoftext|>": 128255}
	for b := range 256 {
		vocab[string(tab[b])] = 70000 + b
	}
	j, err := json.Marshal(map[string]any{
		"added_tokens":  []any{map[string]any{"id": 128255, "content": "<|endoftext|>", "special": true}},
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": []any{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, j, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenize.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 128256 {
		t.Fatalf("wide tokenizer: %d ids, want 128256", tok.VocabSize())
	}
	return tok
}

// TestExportRefusesWideVocab: a set of a vocabulary past uint16 is refused
// in the uint16 formats, naming the tokenizer's size, and nothing is
// written; int32 keeps every id whole.
func TestExportRefusesWideVocab(t *testing.T) {
	docs := docSet(t, "go", 0, 100_000)
	res, err := Build(context.Background(), wideTokenizer(t), []string{docs}, Options{OutDir: filepath.Join(t.TempDir(), "tok"), EOS: true, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	set, err := Open(res.Dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	st, err := set.Stream(Train)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, f := range []string{FormatNanoGPT, FormatLLMC} {
		p := filepath.Join(out, f+".bin")
		err := st.ExportFile(context.Background(), p, f)
		if !errors.Is(err, ErrExport) || !strings.Contains(err.Error(), "128256") || !strings.Contains(err.Error(), "int32") {
			t.Fatalf("%s of a 128256-id vocabulary: %v; want ErrExport naming the size and int32", f, err)
		}
		var buf bytes.Buffer
		if err := st.Export(context.Background(), &buf, f); !errors.Is(err, ErrExport) || buf.Len() != 0 {
			t.Fatalf("%s to a writer: %v, %d bytes written", f, err, buf.Len())
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a refused export left %v", ents)
	}
	p := filepath.Join(out, "train.int32")
	if err := st.ExportFile(context.Background(), p, FormatInt32); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want, _ := streamIDs(t, st)
	got := readInt32s(t, b)
	sameIDs(t, "int32", got, want)
	if slices.Max(got) != 128255 || slices.Min(got) < 70000 {
		t.Fatalf("ids %d..%d: want byte tokens from 70000 and EOS 128255", slices.Min(got), slices.Max(got))
	}
}

// TestExportRefusals: what ExportFile refuses, each before writing
// anything: an unknown format, a path inside the set, a directory, a
// split longer than llm.c's header counts; and a cancelled export leaves
// no file.
func TestExportRefusals(t *testing.T) {
	res := build(t, []string{docSet(t, "go", 0, 100_000)}, Options{EOS: true})
	set, err := Open(res.Dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	st, err := set.Stream(Train)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	before := readAll(t, res.Dir)
	for _, c := range []struct {
		name, path, format, want string
	}{
		{"unknown format", filepath.Join(out, "a.bin"), "uint8", "want jsonl, int32, nanogpt, llmc"},
		{"inside the set", filepath.Join(res.Dir, "train.bin"), FormatNanoGPT, "inside the token shard set"},
		{"the set itself", res.Dir, FormatNanoGPT, "inside the token shard set"},
		{"a directory", out, FormatLLMC, "is a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := st.ExportFile(context.Background(), c.path, c.format)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v; want an error saying %q", err, c.want)
			}
		})
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("refused exports left %v", ents)
	}
	if after := readAll(t, res.Dir); len(after) != len(before) {
		t.Fatalf("the set's directory changed: %d files, was %d", len(after), len(before))
	}

	long := &Stream{set: set, Split: Train, Tokens: 1 << 31}
	if err := long.CheckExport(FormatLLMC); !errors.Is(err, ErrExport) || !strings.Contains(err.Error(), "2147483647") {
		t.Fatalf("llm.c file of 2^31 tokens: %v", err)
	}
	if err := long.CheckExport(FormatNanoGPT); err != nil {
		t.Fatalf("nanoGPT has no header to overflow: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := filepath.Join(out, "cancelled.bin")
	if err := st.ExportFile(ctx, p, FormatNanoGPT); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled export: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a cancelled export left %v", ents)
	}
}
