package tokenize

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// hfWriteText exercises contractions, digits, punctuation, spaces, newlines
// and multi-byte text.
const hfWriteText = "Hello world! It's 2024, isn't it?\n\n  def main():\treturn 42 // ünïcödé 日本語 🙂 <|endoftext|>"

// TestHFFilesGPT2: the built-in GPT-2's tokenizer.json, written from its
// ranks, loads through estkit's tokenizer.json reader and encodes text to
// the built-in's ids; vocab.json and merges.txt hold the same vocabulary
// and merges, and tokenizer_config.json names <|endoftext|> as BOS and EOS.
func TestHFFilesGPT2(t *testing.T) {
	tok, err := GPT2()
	if err != nil {
		t.Fatal(err)
	}
	files, err := HFFiles(tok, "", 1024)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} {
		if files[name] == nil {
			t.Fatalf("no %s", name)
		}
	}
	back, err := LoadHF(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []EncodeOptions{{}, {AllowedSpecial: true, EOS: true}} {
		want, err := tok.Encode(hfWriteText, o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := back.Encode(hfWriteText, o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%+v: exported tokenizer.json encodes %v, the built-in %v", o, got, want)
		}
	}
	if back.VocabSize() != tok.VocabSize() || back.bos != 50256 && back.bos != -1 || back.eos != 50256 {
		t.Fatalf("exported: vocabulary %d, bos %d, eos %d", back.VocabSize(), back.bos, back.eos)
	}
	var vocab map[string]uint32
	if err := json.Unmarshal(files["vocab.json"], &vocab); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(files["merges.txt"]), "\n"), "\n")
	// GPT-2's published files: 50257 tokens, 50000 merges, the first "Ġ t"
	if len(vocab) != 50257 || vocab["<|endoftext|>"] != 50256 || vocab["Ġthe"] != 262 || len(lines) != 50001 || lines[0] != "#version: 0.2" || lines[1] != "Ġ t" {
		t.Fatalf("vocab.json %d tokens, merges.txt %d lines starting %q", len(vocab), len(lines), lines[:2])
	}
	var cfg map[string]any
	if err := json.Unmarshal(files["tokenizer_config.json"], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["bos_token"] != "<|endoftext|>" || cfg["eos_token"] != "<|endoftext|>" || cfg["tokenizer_class"] != "GPT2Tokenizer" {
		t.Fatalf("tokenizer_config.json %v", cfg)
	}
}

// TestHFFilesBytes: the bytes tokenizer has no Hugging Face form.
func TestHFFilesBytes(t *testing.T) {
	if _, err := HFFiles(Bytes(), "", 8); !errors.Is(err, ErrNoHF) {
		t.Fatalf("bytes: %v", err)
	}
}

// spExportTexts need merges (ASCII words, code), the dummy prefix and
// runs of spaces, accents that are pieces, and CJK and emoji that are not
// (byte fallback).
var spExportTexts = []string{
	"Hello world! It's 2024, isn't it?",
	" leading space",
	"   three leading, two  inside,  trailing  ",
	"\n\nfunc main() {\n\treturn 42 // ünïcödé\n}\n",
	"Crème brûlée à la française, naïve café",
	"日本語のテキストと中文文本",
	"emoji 🙂🦙 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
	"",
	" ",
	"▁ a literal ▁ mark",
}

// TestHFFilesSentencePiece: a SentencePiece tokenizer.model exports a
// tokenizer.json laid out as Hugging Face's Llama converter lays it out:
// its vocabulary, merges, normalizer, decoder and special tokens equal
// those of the tokenizer.json that the converter's layout
// (testdata/ref/llama2-tokenizer-json.py, with the sentencepiece library)
// made from the same model; loaded back from the folder it encodes as the
// model does. Llama 2's model has no two pieces of one score and no piece
// with a character that is not a piece, where Hugging Face's BPE and
// SentencePiece would part ways.
func TestHFFilesSentencePiece(t *testing.T) {
	model := filepath.Join(refDir(t), "llama2.model")
	tok := llama2(t)
	files, err := HFFiles(tok, model, 4096)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer.model", "tokenizer_config.json"} {
		if files[name] == nil {
			t.Fatalf("no %s", name)
		}
	}
	var got, want map[string]any
	if err := json.Unmarshal(files["tokenizer.json"], &got); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(refDir(t), "llama2-tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	gm, wm := got["model"].(map[string]any), want["model"].(map[string]any)
	gmerges, wmerges := gm["merges"].([]any), wm["merges"].([]any)
	if len(gmerges) != len(wmerges) {
		t.Fatalf("%d merges, the converter's %d", len(gmerges), len(wmerges))
	}
	for i := range gmerges {
		g, w := gmerges[i].([]any), wmerges[i].([]any)
		if g[0] != w[0] || g[1] != w[1] {
			t.Fatalf("merge %d is %q, the converter's %q", i, g, w)
		}
	}
	for _, k := range []string{"added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"} {
		gs, _ := json.Marshal(got[k])
		ws, _ := json.Marshal(want[k])
		if string(gs) != string(ws) {
			t.Fatalf("%s differs from the converter's:\n%.300s\n%.300s", k, gs, ws)
		}
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	back, err := LoadHF(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range spExportTexts {
		w, _ := tok.Encode(text, EncodeOptions{BOS: true})
		g, err := back.Encode(text, EncodeOptions{BOS: true})
		if err != nil || !slices.Equal(g, w) {
			t.Fatalf("%q: exported tokenizer.json encodes %v, tokenizer.model %v (%v)", text, g, w, err)
		}
	}
	// Where the two BPEs would part ways: the one score several pieces
	// share is that of the runs of "▁" (TestHFFilesSentencePieceTokenizersJS
	// encodes runs of every length up to 40), and no piece holds a
	// character that is not a piece.
	scored := map[float32][]string{}
	sp := tok.sp
	for id, p := range sp.text {
		if sp.typ[id] != pieceNormal {
			continue
		}
		scored[sp.scores[id]] = append(scored[sp.scores[id]], p)
		for _, r := range p {
			if _, ok := sp.pieces[string(r)]; !ok && utf8.RuneCountInString(p) > 1 {
				t.Fatalf("piece %q holds %q, which is no piece", p, r)
			}
		}
	}
	for _, ps := range scored {
		if len(ps) > 1 && slices.ContainsFunc(ps, func(p string) bool { return strings.Trim(p, spaceMark) != "" }) {
			t.Fatalf("pieces %q have one score", ps)
		}
	}
}

// TestHFFilesSentencePieceTokenizersJS: the tokenizer.json exported from
// Llama 2's tokenizer.model, read by an independent reader
// (@huggingface/tokenizers, transformers.js's tokenizer library, that
// `make refs` installs), encodes as estkit's SentencePiece tokenizer does:
// spExportTexts, runs of 1 to 40 spaces (the pieces of one score), and
// every third document of the reference corpus.
func TestHFFilesSentencePieceTokenizersJS(t *testing.T) {
	tok := llama2(t)
	node, err := exec.LookPath("node")
	script, _ := filepath.Abs(filepath.Join("testdata", "ref", "hf.mjs"))
	if _, serr := os.Stat(filepath.Join("testdata", "ref", "node_modules", "@huggingface", "tokenizers")); err != nil || serr != nil {
		if os.Getenv("ESTKIT_REQUIRE_REFS") != "" {
			t.Fatal("node or @huggingface/tokenizers is missing (make refs installs them)")
		}
		t.Skip("node or @huggingface/tokenizers is missing: make refs installs them")
	}
	files, err := HFFiles(tok, filepath.Join(refDir(t), "llama2.model"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	texts := slices.Clone(spExportTexts)
	for n := 1; n <= 40; n++ {
		texts = append(texts, strings.Repeat(" ", n), "a"+strings.Repeat(" ", n)+"b", strings.Repeat(" ", n)+"x")
	}
	for i, d := range readJSONL(t, filepath.Join(refDir(t), "corpus.jsonl")) {
		if i%3 == 0 {
			texts = append(texts, d.Text)
		}
	}
	var in bytes.Buffer
	for i, text := range texts {
		b, _ := json.Marshal(map[string]any{"id": i, "text": text})
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(node, script, filepath.Join(dir, "tokenizer.json"))
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tokenizers.js: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("tokenizers.js wrote %d lines for %d texts", len(lines), len(texts))
	}
	bad := 0
	for i, line := range lines {
		var r struct {
			ID  int      `json:"id"`
			IDs []uint32 `json:"ids"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.ID != i {
			t.Fatalf("tokenizers.js line %d: %q (%v)", i, line, err)
		}
		want, err := tok.Encode(texts[i], EncodeOptions{AllowedSpecial: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.IDs == nil {
			r.IDs = []uint32{}
		}
		if !slices.Equal(r.IDs, want) {
			if bad++; bad <= 5 {
				t.Errorf("%.60q: tokenizers.js %v, estkit's SentencePiece %v", texts[i], r.IDs[:min(len(r.IDs), 20)], want[:min(len(want), 20)])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d texts differ", bad, len(texts))
	}
	t.Logf("%d texts: tokenizers.js on the exported tokenizer.json gives estkit's SentencePiece ids", len(texts))
}
