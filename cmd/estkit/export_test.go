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
