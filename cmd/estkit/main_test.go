package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/kernels/cuda"
)

// run executes the command line in-process and returns stdout, stderr and
// the exit status.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestIngestInspectCLI(t *testing.T) {
	dir := t.TempDir()
	samples := filepath.Join(dir, "samples")
	if _, _, code := run(t, "samples", "--out", samples, "--bytes", "2000000"); code != 0 {
		t.Fatal("samples failed")
	}
	docs := filepath.Join(dir, "docs")
	out, errs, code := run(t, "ingest", "--out", docs, samples)
	if code != 0 {
		t.Fatalf("ingest: %s", errs)
	}
	for _, want := range []string{"openwebtext", "slimpajama", "starcoderdata", "total"} {
		if !strings.Contains(out, want) {
			t.Fatalf("summary lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, "ingest", "--out", docs, samples)
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("second ingest did not report reuse:\n%s", out)
	}

	out, _, code = run(t, "inspect", docs, "--json")
	if code != 0 {
		t.Fatal("inspect --json failed")
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("inspect --json is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"documents", "text_bytes", "filtered", "rejected"} {
		if _, ok := s[k]; !ok {
			t.Fatalf("inspect --json lacks %q", k)
		}
	}
	if _, ok := s["filtered"].(map[string]any); !ok {
		t.Fatal("filtered is not an object")
	}
	if s["documents"].(float64) < 10 {
		t.Fatalf("documents %v", s["documents"])
	}

	out, _, code = run(t, "inspect", docs, "--doc", "3", "--json")
	var d struct {
		Text    string         `json:"text"`
		Lineage map[string]any `json:"lineage"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Text == "" || d.Lineage["file"] == nil || d.Lineage["sha256"] == nil {
		t.Fatalf("inspect --doc 3 --json:\n%s", out)
	}
	if _, errs, code := run(t, "inspect", docs, "--doc", "100000"); code == 0 || !strings.Contains(errs, "out of range") {
		t.Fatalf("out-of-range document: code %d, %s", code, errs)
	}
}

func TestIngestBadInputCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := corpusgen.WriteFile(filepath.Join(in, "a.jsonl"), []byte("{\"text\": \"ok\"}\n{\"text\": \"broken\n")); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "ingest", "--quiet", "--out", filepath.Join(dir, "o"), in)
	if code == 0 || !strings.Contains(errs, "a.jsonl: line 2: invalid JSON") {
		t.Fatalf("code %d, stderr:\n%s", code, errs)
	}
	out, errs, code := run(t, "--json", "ingest", "--on-error", "skip", "--out", filepath.Join(dir, "o"), in)
	if code != 0 {
		t.Fatalf("skip: %s", errs)
	}
	var s struct {
		Documents int64            `json:"documents"`
		Rejected  map[string]int64 `json:"rejected"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Documents != 1 || s.Rejected["invalid-json"] != 1 {
		t.Fatalf("skip summary %s (%v)", out, err)
	}
	// --json logs are JSON lines.
	for _, l := range strings.Split(strings.TrimSpace(errs), "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			t.Fatalf("log line is not JSON: %s", l)
		}
	}
	if _, errs, code := run(t, "ingest", "--format", "nope", "--out", filepath.Join(dir, "p"), in); code == 0 || !strings.Contains(errs, "format") {
		t.Fatalf("unknown format accepted: %s", errs)
	}
	if _, errs, code := run(t, "ingest", in); code == 0 || !strings.Contains(errs, "out") {
		t.Fatalf("missing --out accepted: %s", errs)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	out, _, code := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "estkit ") {
		t.Fatalf("version: %q", out)
	}
	out, _, code = run(t, "completion", "bash")
	if code != 0 || !strings.Contains(out, "estkit") {
		t.Fatal("bash completion missing")
	}
}

func TestTokenizeCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "docs.jsonl")
	if err := corpusgen.WriteFile(in, []byte("{\"id\": \"a\", \"text\": \"Hello world's <|endoftext|>\"}\n{\"body\": \"x\", \"text\": \"second doc\"}\n")); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "tokenize", "--input", in, "--eos")
	want := "{\"id\": \"a\", \"ids\": [15496,995,338,1279,91,437,1659,5239,91,29,50256]}\n{\"id\": 2, \"ids\": [12227,2205,50256]}\n"
	if code != 0 || out != want {
		t.Fatalf("tokenize: code %d, stderr %s\ngot  %q\nwant %q", code, errs, out, want)
	}
	ids := filepath.Join(dir, "ids.jsonl")
	if err := corpusgen.WriteFile(ids, []byte(out)); err != nil {
		t.Fatal(err)
	}
	out, _, code = run(t, "tokenize", "--decode", "--input", ids)
	if code != 0 || out != "{\"id\": \"a\", \"text\": \"Hello world's <|endoftext|><|endoftext|>\"}\n{\"id\": 2, \"text\": \"second doc<|endoftext|>\"}\n" {
		t.Fatalf("decode: %q", out)
	}
	out, _, code = run(t, "tokenize", "--input", in, "--count")
	if code != 0 || !strings.Contains(out, "\"documents\": 2") || !strings.Contains(out, "\"tokens\": 12") {
		t.Fatalf("count: %q", out)
	}
	if _, errs, code := run(t, "tokenize", "--input", in, "--field", "nope"); code == 0 || !strings.Contains(errs, "line 1") {
		t.Fatalf("missing field: %s", errs)
	}
	if _, errs, code := run(t, "tokenize", "--tokenizer", "llama2"); code == 0 || !strings.Contains(errs, "tokenizer.model") {
		t.Fatalf("unknown tokenizer: %s", errs)
	}
	if refs := os.Getenv("ESTKIT_REFS"); refs != "" {
		out, errs, code := run(t, "tokenize", "--tokenizer", filepath.Join(refs, "llama2.model"), "--input", in, "--bos")
		if code != 0 || !strings.HasPrefix(out, "{\"id\": \"a\", \"ids\": [1,15043,3186,29915,29879") {
			t.Fatalf("llama2: code %d %s\n%s", code, errs, out)
		}
	}
}

// sampleDocs writes `estkit samples` of the given size into a temporary
// directory and ingests them; it returns the directory, the samples and the
// document shards.
func sampleDocs(t *testing.T, bytes string) (dir, samples, docs string) {
	t.Helper()
	dir = t.TempDir()
	samples, docs = filepath.Join(dir, "samples"), filepath.Join(dir, "docs")
	if _, _, code := run(t, "samples", "--out", samples, "--bytes", bytes); code != 0 {
		t.Fatal("samples failed")
	}
	if _, errs, code := run(t, "-q", "ingest", "--out", docs, samples); code != 0 {
		t.Fatalf("ingest: %s", errs)
	}
	return dir, samples, docs
}

// TestShardCLI: ingest → shard (twice: the second reuses the set) →
// inspect: summary, a sequence with its lineage, the token stream.
func TestShardCLI(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "1000000")
	cache := filepath.Join(dir, "cache")
	out, errs, code := run(t, "--json", "shard", "--cache", cache, "--val-fraction", "0.1", docs)
	var res struct {
		Dir      string `json:"dir"`
		Reused   bool   `json:"reused"`
		Manifest struct {
			Key    string `json:"key"`
			Splits map[string]struct {
				Documents, Tokens int64
			} `json:"splits"`
		} `json:"manifest"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Reused || res.Manifest.Splits["val"].Documents == 0 {
		t.Fatalf("shard: %s %s", out, errs)
	}
	if filepath.Dir(res.Dir) != cache || filepath.Base(res.Dir) != res.Manifest.Key {
		t.Fatalf("set at %s, want %s/<key>", res.Dir, cache)
	}
	out, _, code = run(t, "shard", "--cache", cache, "--val-fraction", "0.1", docs)
	if code != 0 || !strings.Contains(out, "up to date") || !strings.Contains(out, res.Dir) {
		t.Fatalf("second shard did work:\n%s", out)
	}
	out, _, code = run(t, "inspect", res.Dir)
	if code != 0 || !strings.Contains(out, "gpt2") || !strings.Contains(out, "openwebtext") {
		t.Fatalf("inspect:\n%s", out)
	}
	out, errs, code = run(t, "--json", "inspect", res.Dir, "--seq", "2", "--seq-len", "16")
	var seq struct {
		IDs   []int32          `json:"ids"`
		Text  string           `json:"text"`
		Spans []map[string]any `json:"spans"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &seq) != nil || len(seq.IDs) != 17 || seq.Text == "" || len(seq.Spans) == 0 {
		t.Fatalf("inspect --seq: %s %s", out, errs)
	}
	out, _, code = run(t, "inspect", res.Dir, "--tokens", "--split", "val")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || int64(len(lines)) != res.Manifest.Splits["val"].Documents || !strings.HasSuffix(lines[0], ",50256]") {
		t.Fatalf("inspect --tokens: %d lines for %d documents; first %.80q", len(lines), res.Manifest.Splits["val"].Documents, lines[0])
	}
	out, _, code = run(t, "inspect", res.Dir, "--tokens", "--split", "val", "--format", "int32")
	if code != 0 || int64(len(out)) != 4*res.Manifest.Splits["val"].Tokens {
		t.Fatalf("inspect --tokens int32: %d bytes for %d tokens", len(out), res.Manifest.Splits["val"].Tokens)
	}
	if _, errs, code = run(t, "shard", "--out", filepath.Join(dir, "x"), samples); code == 0 || !strings.Contains(errs, "not a document shard set") {
		t.Fatalf("raw corpus as shard input: %d %s", code, errs)
	}
}

// TestTrainCLI: shard → train (EST, checkpoints) → eval, sample, export;
// a bad schedule is refused.
func TestTrainCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "600000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	runDir := filepath.Join(dir, "run")
	out, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", runDir, "--steps", "4", "--batch", "2", "--seq", "16",
		"--est-stages", "2,4", "--est-rates", "0.5:0.5:0.5,1:1:1", "--checkpoint-every", "2", "--eval-every", "2")
	if code != 0 || !strings.Contains(out, "0.5:0.5:0.5") || !strings.Contains(out, "75.0%") {
		t.Fatalf("train: %s %s", out, errs)
	}
	for _, f := range []string{"config.json", "metrics.jsonl", "stages.json", "lineage.jsonl", "checkpoints/latest"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err != nil {
			t.Fatalf("run directory lacks %s", f)
		}
	}
	if out, errs, code = run(t, "eval", "--run", runDir, "--batches", "2"); code != 0 || !strings.Contains(out, "val loss") {
		t.Fatalf("eval: %s %s", out, errs)
	}
	if out, errs, code = run(t, "sample", "--run", runDir, "--prompt", "func", "--tokens", "5"); code != 0 || !strings.HasPrefix(out, "func") {
		t.Fatalf("sample: %s %s", out, errs)
	}
	out, errs, code = run(t, "est-trace", "--run", runDir, "--steps", "1:3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], `"stage":0`) || !strings.Contains(lines[1], `"heads":null`) {
		t.Fatalf("est-trace: %s %s", out, errs)
	}
	hf := filepath.Join(dir, "hf")
	if _, errs, code = run(t, "export", "--run", runDir, "--hf", hf); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if _, err := os.Stat(filepath.Join(hf, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	if _, errs, code = run(t, "train", "--data", tok, "--out", filepath.Join(dir, "bad"), "--est-stages", "4,2", "--est-rates", "1:1:1,1:1:1"); code == 0 || !strings.Contains(errs, "stage ends") {
		t.Fatalf("bad schedule accepted: %s", errs)
	}
}

// TestTrainLlamaCLI: a small Llama (its shape from a --config file, on
// GPT-2-tokenized shards) trains with est-tinyllama and "within" head
// sampling, resumes, exports LlamaForCausalLM tensors, and samples with
// its data's tokenizer and not with another.
func TestTrainLlamaCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "400000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	conf := filepath.Join(dir, "llama.json")
	model := `{"model": {"Arch": "llama", "Vocab": 50257, "Padded": 50304, "Layers": 4, "Heads": 4, "KVHeads": 2, "Channels": 32, "FF": 88, "MaxT": 32, "RopeTheta": 10000, "NormEps": 1e-5}}`
	if err := os.WriteFile(conf, []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	out, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--out", runDir, "--steps", "5", "--batch", "2", "--seq", "16",
		"--est", "est-tinyllama", "--est-heads", "within", "--checkpoint-every", "2")
	if code != 0 || !strings.Contains(out, "0.5:0.5:0.5") {
		t.Fatalf("train: %s %s", out, errs)
	}
	b, err := os.ReadFile(filepath.Join(runDir, "config.json"))
	if err != nil || !strings.Contains(string(b), `"arch": "llama"`) || !strings.Contains(string(b), `"heads": "within"`) {
		t.Fatalf("config.json: %s %v", b, err)
	}
	if _, errs, code = run(t, "-q", "train", "--out", runDir, "--resume"); code != 0 {
		t.Fatalf("resume: %s", errs)
	}
	hf := filepath.Join(dir, "hf")
	if _, errs, code = run(t, "export", "--run", runDir, "--hf", hf); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if b, err := os.ReadFile(filepath.Join(hf, "config.json")); err != nil || !strings.Contains(string(b), "LlamaForCausalLM") {
		t.Fatalf("exported config.json: %s %v", b, err)
	}
	if _, errs, code = run(t, "sample", "--run", runDir, "--prompt", "func", "--tokens", "3", "--tokenizer", "bytes"); code == 0 || !strings.Contains(errs, "bytes@1") {
		t.Fatalf("sample with another tokenizer than the data's: %d %s", code, errs)
	}
	if out, errs, code = run(t, "sample", "--run", runDir, "--prompt", "func", "--tokens", "3", "--tokenizer", "gpt2"); code != 0 || !strings.HasPrefix(out, "func") {
		t.Fatalf("sample: %s %s", out, errs)
	}
}

// TestTinyLlamaRecipeCLI: TinyLlama's recipe as the README gives it, on the
// built-in samples and a CPU-sized Llama: SlimPajama without GitHub and
// StarCoderData, sharded with the Llama 2 tokenizer (BOS), mixed
// 0.693584 / 0.306416, trained with est-tinyllama, sampled. Needs the Llama
// 2 tokenizer.model that `make refs` fetches (ESTKIT_REFS).
func TestTinyLlamaRecipeCLI(t *testing.T) {
	refs := os.Getenv("ESTKIT_REFS")
	if refs == "" {
		t.Skip("the Llama 2 tokenizer.model is fetched by `make refs`: run `make test`, which sets ESTKIT_REFS")
	}
	model := filepath.Join(refs, "llama2.model")
	dir := t.TempDir()
	samples := filepath.Join(dir, "samples")
	if _, _, code := run(t, "samples", "--out", samples, "--bytes", "400000"); code != 0 {
		t.Fatal("samples failed")
	}
	slim, code := filepath.Join(dir, "docs", "slim"), filepath.Join(dir, "docs", "code")
	if _, errs, c := run(t, "-q", "ingest", "--format", "slimpajama", "--exclude-set", "RedPajamaGithub", "--out", slim, filepath.Join(samples, "slimpajama")); c != 0 {
		t.Fatalf("ingest slimpajama: %s", errs)
	}
	if _, errs, c := run(t, "-q", "ingest", "--format", "starcoder", "--out", code, filepath.Join(samples, "starcoderdata")); c != 0 {
		t.Fatalf("ingest starcoder: %s", errs)
	}
	tok := map[string]string{}
	for name, docs := range map[string]string{"slim": slim, "code": code} {
		tok[name] = filepath.Join(dir, "tok", name)
		if _, errs, c := run(t, "-q", "shard", "--tokenizer", model, "--bos", "--val-fraction", "0.05", "--out", tok[name], docs); c != 0 {
			t.Fatalf("shard %s: %s", name, errs)
		}
	}
	runDir := filepath.Join(dir, "run")
	out, errs, c := run(t, "-q", "train", "--preset", "llama-tiny", "--data", tok["slim"]+":0.693584", "--data", tok["code"]+":0.306416",
		"--out", runDir, "--est", "est-tinyllama", "--steps", "5", "--batch", "2", "--seq", "32")
	if c != 0 || !strings.Contains(out, "1:0.5:0.5") || !strings.Contains(out, "1:1:1") { // one key/value head: heads run whole (realised rate 1)
		t.Fatalf("train: %s %s", out, errs)
	}
	b, err := os.ReadFile(filepath.Join(runDir, "config.json"))
	if err != nil || !strings.Contains(string(b), `"decay": "cosine"`) || !strings.Contains(string(b), `"lr": 0.0004`) || !strings.Contains(string(b), "0.306416") {
		t.Fatalf("config.json: %s %v", b, err)
	}
	if out, errs, c = run(t, "sample", "--run", runDir, "--tokenizer", model, "--prompt", "package main", "--tokens", "4"); c != 0 || !strings.HasPrefix(out, "package main") {
		t.Fatalf("sample: %s %s", out, errs)
	}
}

// TestGPUCLI: without a CUDA build, gpu fails and says so; with one (a GPU
// or the emulator), it names the backend.
func TestGPUCLI(t *testing.T) {
	out, errs, code := run(t, "gpu")
	switch {
	case code != 0 && !strings.Contains(errs, "without CUDA") && !strings.Contains(errs, "cuda:"):
		t.Fatalf("gpu failed without saying why: %q", errs)
	case code == 0 && !strings.Contains(out, "cuda"):
		t.Fatalf("gpu printed %q", out)
	}
}

// TestTrainDeviceCLI: the same EST run with --device cuda (a GPU, or the
// emulator with -tags cudaemu) and --device cpu logs the same losses (near
// them with bf16 products, attention and activations), and the CUDA run's
// stages name their device; eval runs on it too.
func TestTrainDeviceCLI(t *testing.T) {
	if _, err := cuda.New(); err != nil {
		if _, errs, code := run(t, "--device", "cuda", "eval", "--run", t.TempDir()); code == 0 || !strings.Contains(errs, "cuda") {
			t.Fatalf("--device cuda without CUDA: %s", errs)
		}
		t.Skipf("no CUDA backend: %v", err)
	}
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := run(t, "-q", "train", "--matmul", "bf16", "--preset", "gpt2-tiny", "--data", tok, "--out", filepath.Join(dir, "cpu-bf16"),
		"--steps", "1", "--batch", "2", "--seq", "16"); code == 0 || !strings.Contains(errs, "bf16") {
		t.Fatalf("bf16 products on the CPU: %s", errs)
	}
	if _, errs, code := run(t, "-q", "train", "--attention", "bf16", "--preset", "gpt2-tiny", "--data", tok, "--out", filepath.Join(dir, "cpu-bf16-attention"),
		"--steps", "1", "--batch", "2", "--seq", "16"); code == 0 || !strings.Contains(errs, "attention bf16") {
		t.Fatalf("bf16 attention on the CPU: %s", errs)
	}
	if _, errs, code := run(t, "-q", "train", "--activations", "bf16", "--preset", "gpt2-tiny", "--data", tok, "--out", filepath.Join(dir, "cpu-bf16-activations"),
		"--steps", "1", "--batch", "2", "--seq", "16"); code == 0 || !strings.Contains(errs, "activations bf16") {
		t.Fatalf("bf16 activations on the CPU: %s", errs)
	}
	losses := map[string][]float64{}
	for _, dev := range []string{"cpu", "cuda", "cuda-bf16", "cuda-bf16-act"} {
		runDir := filepath.Join(dir, dev)
		device, matmul, acts := dev, "fp32", "fp32"
		switch dev {
		case "cuda-bf16": // bf16 products and attention
			device, matmul = "cuda", "bf16"
		case "cuda-bf16-act": // and bf16 activations
			device, matmul, acts = "cuda", "bf16", "bf16"
		}
		if _, errs, code := run(t, "-q", "--device", device, "train", "--matmul", matmul, "--attention", matmul, "--activations", acts, "--preset", "gpt2-tiny", "--data", tok, "--out", runDir, "--steps", "4",
			"--batch", "2", "--seq", "16", "--est-stages", "2,4", "--est-rates", "0.5:0.5:0.5,1:1:1"); code != 0 {
			t.Fatalf("train on %s: %s", dev, errs)
		}
		if cfg, err := os.ReadFile(filepath.Join(runDir, "config.json")); err != nil || strings.Contains(string(cfg), `"activations"`) != (acts == "bf16") {
			t.Fatalf("config.json of the %s run and its activations (%s): %s %v", dev, acts, cfg, err)
		}
		f, err := os.Open(filepath.Join(runDir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var rec struct{ Loss float64 }
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatal(err)
			}
			losses[dev] = append(losses[dev], rec.Loss)
		}
		f.Close()
		stages, err := os.ReadFile(filepath.Join(runDir, "stages.json"))
		if err != nil || !strings.Contains(string(stages), `"device": "`+device) && !strings.Contains(string(stages), `"device":"`+device) {
			t.Fatalf("stages.json of the %s run does not name its device: %s", dev, stages)
		}
	}
	if len(losses["cpu"]) != 4 || len(losses["cuda"]) != 4 || len(losses["cuda-bf16"]) != 4 || len(losses["cuda-bf16-act"]) != 4 {
		t.Fatalf("losses: %v", losses)
	}
	for i, want := range losses["cpu"] {
		if got := losses["cuda"][i]; math.Abs(got-want) > 1e-4*math.Abs(want) {
			t.Errorf("step %d: loss %.6f on cuda, %.6f on cpu", i, got, want)
		}
		// bf16 products and attention: near, not equal (8 bits of mantissa)
		if got := losses["cuda-bf16"][i]; math.Abs(got-want) > 2e-2*math.Abs(want) || got == want {
			t.Errorf("step %d: loss %.6f on cuda with bf16 products, %.6f on cpu", i, got, want)
		}
		if got := losses["cuda-bf16-act"][i]; math.Abs(got-want) > 2e-2*math.Abs(want) || got == losses["cuda-bf16"][i] {
			t.Errorf("step %d: loss %.6f on cuda with bf16 products and activations, %.6f on cpu, %.6f with fp32 activations", i, got, want, losses["cuda-bf16"][i])
		}
	}
	if out, errs, code := run(t, "--device", "cuda", "eval", "--run", filepath.Join(dir, "cuda"), "--batches", "1"); code != 0 || !strings.Contains(out, "val loss") {
		t.Fatalf("eval on cuda: %s %s", out, errs)
	}
}
