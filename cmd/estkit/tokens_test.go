package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The readers here follow the trainers' descriptions: nanoGPT reads
// train.bin as np.memmap(dtype=np.uint16); llm.c's dataloader.h reads 256
// int32 of header (magic 20240520, version 1, token count) and checks the
// file is the header and two bytes a token.

func nanoGPTTokens(t *testing.T, b []byte) []int64 {
	t.Helper()
	if len(b)%2 != 0 {
		t.Fatalf("nanoGPT file of %d bytes: not whole uint16s", len(b))
	}
	ids := make([]int64, len(b)/2)
	for i := range ids {
		ids[i] = int64(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return ids
}

func llmcTokens(t *testing.T, b []byte) []int64 {
	t.Helper()
	if len(b) < 1024 {
		t.Fatalf("llm.c file of %d bytes", len(b))
	}
	magic, ver, n := int32(binary.LittleEndian.Uint32(b)), int32(binary.LittleEndian.Uint32(b[4:])), int32(binary.LittleEndian.Uint32(b[8:]))
	if magic != 20240520 || ver != 1 || int64(len(b)) != 1024+2*int64(n) {
		t.Fatalf("llm.c header: magic %d, version %d, %d tokens in %d bytes", magic, ver, n, len(b))
	}
	for i := 12; i < 1024; i++ {
		if b[i] != 0 {
			t.Fatalf("llm.c header byte %d is %d, want 0", i, b[i])
		}
	}
	return nanoGPTTokens(t, b[1024:])
}

// jsonlTokens is the split's stream as the jsonl format prints it, one
// document a line, concatenated.
func jsonlTokens(t *testing.T, tok, split string) []int64 {
	t.Helper()
	out, errs, code := run(t, "inspect", tok, "--tokens", "--split", split)
	if code != 0 {
		t.Fatalf("inspect --tokens --split %s: %s", split, errs)
	}
	var all []int64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ids []int64
		if err := json.Unmarshal([]byte(l), &ids); err != nil {
			t.Fatal(err)
		}
		all = append(all, ids...)
	}
	return all
}

func sameTokens(t *testing.T, what string, got, want []int64) {
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

// TestTokensForOtherTrainers: estkit inspect --tokens writes each split in
// nanoGPT's and llm.c's formats to the file --out names (its directory
// created), the same bytes as to standard output, and says what it wrote.
func TestTokensForOtherTrainers(t *testing.T) {
	tok, _ := tinyTokenSet(t)
	out := filepath.Join(t.TempDir(), "data", "owt")
	for _, split := range []string{"train", "val"} {
		want := jsonlTokens(t, tok, split)
		for _, c := range []struct {
			format string
			read   func(*testing.T, []byte) []int64
		}{{"nanogpt", nanoGPTTokens}, {"llmc", llmcTokens}} {
			p := filepath.Join(out, split+"."+c.format+".bin")
			msg, errs, code := run(t, "inspect", tok, "--tokens", "--split", split, "--format", c.format, "--out", p)
			if code != 0 || !strings.Contains(msg, p) || !strings.Contains(msg, split) {
				t.Fatalf("%s %s: exit status %d, %q %s", split, c.format, code, msg, errs)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sameTokens(t, split+" "+c.format, c.read(t, b), want)
			stdout, _, code := run(t, "inspect", tok, "--tokens", "--split", split, "--format", c.format)
			if code != 0 || stdout != string(b) {
				t.Fatalf("%s %s to standard output: %d bytes, the file %d", split, c.format, len(stdout), len(b))
			}
		}
	}
	p := filepath.Join(out, "val.bin")
	res, errs, code := run(t, "--json", "inspect", tok, "--tokens", "--split", "val", "--format", "llmc", "--out", p)
	var r struct {
		Path   string `json:"path"`
		Tokens int64  `json:"tokens"`
	}
	if code != 0 || json.Unmarshal([]byte(res), &r) != nil || r.Path != p || r.Tokens != int64(len(jsonlTokens(t, tok, "val"))) {
		t.Fatalf("--json: %d %s %s", code, res, errs)
	}
	if _, errs, code := run(t, "inspect", tok, "--tokens", "--format", "nanogpt", "--out", filepath.Join(tok, "train.bin")); code != 1 || !strings.Contains(errs, "inside the token shard set") {
		t.Fatalf("--out inside the set: %d %s", code, errs)
	}
}

// byteLevelChars is GPT-2's map from bytes to the characters byte-level
// vocabularies spell them with.
func byteLevelChars() [256]rune {
	var tab [256]rune
	next := rune(256)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			tab[b] = rune(b)
		} else {
			tab[b] = next
			next++
		}
	}
	return tab
}

// TestTokensRefuseWideVocab: a set sharded with a Llama 3-size vocabulary
// (a byte-level tokenizer.json of our own: bytes at ids 70000 to 70255,
// <|endoftext|> at 128255) is refused in the uint16 formats, exit status
// 1, naming the vocabulary and the way out, and no file is written;
// int32 writes it whole.
func TestTokensRefuseWideVocab(t *testing.T) {
	dir, _, docs := sampleDocs(t, "100000")
	tab := byteLevelChars()
	vocab := map[string]int{"<|endoftext|>": 128255}
	for b := range 256 {
		vocab[string(tab[b])] = 70000 + b
	}
	j, _ := json.Marshal(map[string]any{
		"added_tokens":  []any{map[string]any{"id": 128255, "content": "<|endoftext|>", "special": true}},
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": []any{}},
	})
	tj := filepath.Join(dir, "wide", "tokenizer.json")
	if err := os.MkdirAll(filepath.Dir(tj), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tj, j, 0o644); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--tokenizer", tj, "--eos", "--val-fraction", "0.1", "--out", tok, docs); code != 0 {
		t.Fatalf("shard: %s", errs)
	}
	out := filepath.Join(dir, "out")
	for _, f := range []string{"nanogpt", "llmc"} {
		for _, to := range [][]string{{"--out", filepath.Join(out, f+".bin")}, nil} {
			args := append([]string{"inspect", tok, "--tokens", "--format", f}, to...)
			stdout, errs, code := run(t, args...)
			if code != 1 || stdout != "" || !strings.Contains(errs, "128256 ids") || !strings.Contains(errs, "--format int32") {
				t.Fatalf("%q: exit status %d, %d bytes out, %q; want 1, nothing written, the vocabulary size and int32 named", args, code, len(stdout), errs)
			}
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused export created %s (%v)", out, err)
	}
	raw, _, code := run(t, "inspect", tok, "--tokens", "--format", "int32")
	want := jsonlTokens(t, tok, "train")
	if code != 0 || len(raw) != 4*len(want) {
		t.Fatalf("int32: %d bytes for %d tokens", len(raw), len(want))
	}
	for i, w := range want {
		if got := int64(binary.LittleEndian.Uint32([]byte(raw[4*i:]))); got != w || w < 70000 {
			t.Fatalf("int32 token %d: %d, jsonl %d (want ids from 70000)", i, got, w)
		}
	}
}
