package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/tokenize"
)

// TestExportFolderCLI: export writes a loadable folder as a user would ask
// for it: bf16 weights in several shards with their index, config.json and
// generation_config.json with GPT-2's end-of-text id, and the tokenizer
// (tokenizer.json that encodes as the data's tokenizer, tokenizer_config.json,
// vocab.json, merges.txt); train --init-from starts from that folder; a
// model of another shape is refused naming the field; a --tokenizer other
// than the data's is refused.
func TestExportFolderCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", runDir, "--steps", "2", "--batch", "2", "--seq", "16"); code != 0 {
		t.Fatal(errs)
	}
	hf := filepath.Join(dir, "hf")
	if _, errs, code := run(t, "export", "--run", runDir, "--hf", hf, "--dtype", "bf16", "--max-shard-size", "300KB"); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	ents, _ := os.ReadDir(hf)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	for _, want := range []string{"config.json", "generation_config.json", "model.safetensors.index.json", "model-00001-of-", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Fatalf("export wrote %v: no %s", names, want)
		}
	}
	if slices.Contains(names, "model.safetensors") {
		t.Fatalf("a sharded export also wrote model.safetensors: %v", names)
	}
	var gen map[string]any
	b, _ := os.ReadFile(filepath.Join(hf, "generation_config.json"))
	if json.Unmarshal(b, &gen) != nil || gen["eos_token_id"] != 50256.0 || gen["bos_token_id"] != 50256.0 {
		t.Fatalf("generation_config.json: %s", b)
	}
	exported, err := tokenize.LoadHF(filepath.Join(hf, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	gpt2, _ := tokenize.GPT2()
	const text = "The exported tokenizer's ids: 42 ünïcödé, like the data's.\n"
	x, _ := exported.Encode(text, tokenize.EncodeOptions{})
	y, _ := gpt2.Encode(text, tokenize.EncodeOptions{})
	if !slices.Equal(x, y) {
		t.Fatalf("exported tokenizer.json encodes %v, the data's tokenizer %v", x, y)
	}
	if _, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", filepath.Join(dir, "again"), "--steps", "1", "--batch", "2", "--seq", "16", "--init-from", hf); code != 0 {
		t.Fatalf("train --init-from the export: %s", errs)
	}
	if _, errs, code := run(t, "-q", "train", "--preset", "gpt2-mini", "--data", tok, "--out", filepath.Join(dir, "other"), "--steps", "1", "--batch", "2", "--seq", "16", "--init-from", hf); code == 0 || !strings.Contains(errs, "config.json") || !strings.Contains(errs, "n_embd") {
		t.Fatalf("train --init-from into another shape: %d %s", code, errs)
	}
	if _, errs, code := run(t, "export", "--run", runDir, "--hf", filepath.Join(dir, "hf2"), "--tokenizer", "bytes"); code == 0 || !strings.Contains(errs, "bytes@") {
		t.Fatalf("export with another tokenizer than the data's: %d %s", code, errs)
	}
	if _, errs, code := run(t, "export", "--run", runDir, "--hf", filepath.Join(dir, "hf3"), "--max-shard-size", "-1GB"); code == 0 || !strings.Contains(errs, "max-shard-size") {
		t.Fatalf("export --max-shard-size -1GB: %d %s", code, errs)
	}
}

// TestReexportOwnTokenizerCLI: a run started from an export (--init-from
// the folder) exports again with --tokenizer naming the folder or its
// tokenizer.json, which estkit wrote from the data's tokenizer: the same
// tokenizer, not a mismatch. A tokenizer.json that is not the export's is
// still refused.
func TestReexportOwnTokenizerCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "200000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	runDir, hf := filepath.Join(dir, "run"), filepath.Join(dir, "hf")
	if _, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", runDir, "--steps", "1", "--batch", "2", "--seq", "16"); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := run(t, "export", "--run", runDir, "--hf", hf); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	again := filepath.Join(dir, "again")
	if _, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", again, "--steps", "1", "--batch", "2", "--seq", "16", "--init-from", hf); code != 0 {
		t.Fatalf("train --init-from the export: %s", errs)
	}
	want, _ := os.ReadFile(filepath.Join(hf, "tokenizer.json"))
	for i, name := range []string{hf, filepath.Join(hf, "tokenizer.json")} {
		out := filepath.Join(dir, "hf-again", string(rune('a'+i)))
		if _, errs, code := run(t, "export", "--run", again, "--tokenizer", name, "--hf", out); code != 0 {
			t.Fatalf("export --tokenizer %s: %d %s", name, code, errs)
		}
		if got, _ := os.ReadFile(filepath.Join(out, "tokenizer.json")); string(got) != string(want) {
			t.Fatalf("export --tokenizer %s: tokenizer.json differs from the first export's", name)
		}
	}
	// sample takes the export's tokenizer as export does
	for _, name := range []string{hf, filepath.Join(hf, "tokenizer.json")} {
		if out, errs, code := run(t, "sample", "--run", again, "--tokenizer", name, "--prompt", "func", "--tokens", "3"); code != 0 || !strings.HasPrefix(out, "func") {
			t.Fatalf("sample --tokenizer %s: %d %q %s", name, code, out, errs)
		}
	}
	// the export's tokenizer.json with the ids of "!" and "#" swapped is
	// another tokenizer
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	var f map[string]any
	if err := json.Unmarshal(want, &f); err != nil {
		t.Fatal(err)
	}
	v := f["model"].(map[string]any)["vocab"].(map[string]any)
	v["!"], v["#"] = v["#"], v["!"]
	b, _ := json.Marshal(f)
	os.WriteFile(filepath.Join(other, "tokenizer.json"), b, 0o644)
	if _, errs, code := run(t, "export", "--run", again, "--tokenizer", filepath.Join(other, "tokenizer.json"), "--hf", filepath.Join(dir, "hf-other")); code == 0 || !strings.Contains(errs, "mismatch") {
		t.Fatalf("export with another tokenizer.json: %d %s", code, errs)
	}
}

// TestExportSentencePieceCLI: a Llama run on data sharded with a
// SentencePiece tokenizer.model exports tokenizer.model and a
// tokenizer.json that encodes as the model does (a Llama folder that
// LlamaTokenizerFast and transformers.js load); a run started from the
// folder exports again naming the folder as its tokenizer. Needs the Llama
// 2 tokenizer.model that `make refs` fetches (ESTKIT_REFS).
func TestExportSentencePieceCLI(t *testing.T) {
	refs := os.Getenv("ESTKIT_REFS")
	if refs == "" {
		t.Skip("the Llama 2 tokenizer.model is fetched by `make refs`: run `make test`, which sets ESTKIT_REFS")
	}
	model := filepath.Join(refs, "llama2.model")
	dir, _, docs := sampleDocs(t, "200000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--tokenizer", model, "--bos", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	runDir, hf := filepath.Join(dir, "run"), filepath.Join(dir, "hf")
	if _, errs, code := run(t, "-q", "train", "--preset", "llama-tiny", "--data", tok, "--out", runDir, "--steps", "1", "--batch", "2", "--seq", "16"); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := run(t, "export", "--run", runDir, "--tokenizer", model, "--hf", hf); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer.model", "tokenizer_config.json"} {
		if _, err := os.Stat(filepath.Join(hf, name)); err != nil {
			t.Fatalf("export wrote no %s: %v", name, err)
		}
	}
	exported, err := tokenize.LoadHF(filepath.Join(hf, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tokenize.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	const text = "  The exported tokenizer: crème brûlée, 日本語 🦙\n"
	x, _ := exported.Encode(text, tokenize.EncodeOptions{BOS: true})
	y, _ := sp.Encode(text, tokenize.EncodeOptions{BOS: true})
	if !slices.Equal(x, y) {
		t.Fatalf("exported tokenizer.json encodes %v, tokenizer.model %v", x, y)
	}
	again := filepath.Join(dir, "again")
	if _, errs, code := run(t, "-q", "train", "--preset", "llama-tiny", "--data", tok, "--out", again, "--steps", "1", "--batch", "2", "--seq", "16", "--init-from", hf); code != 0 {
		t.Fatalf("train --init-from the export: %s", errs)
	}
	want, _ := os.ReadFile(filepath.Join(hf, "tokenizer.json"))
	for i, name := range []string{hf, filepath.Join(hf, "tokenizer.json")} {
		out := filepath.Join(dir, "hf-again", string(rune('a'+i)))
		if _, errs, code := run(t, "export", "--run", again, "--tokenizer", name, "--hf", out); code != 0 {
			t.Fatalf("export --tokenizer %s: %d %s", name, code, errs)
		}
		if got, _ := os.ReadFile(filepath.Join(out, "tokenizer.json")); string(got) != string(want) {
			t.Fatalf("export --tokenizer %s: tokenizer.json differs from the first export's", name)
		}
	}
}
