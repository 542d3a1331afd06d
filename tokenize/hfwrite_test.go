package tokenize

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
