package train

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// specReader reads a Hugging Face model folder as the safetensors spec and
// transformers' index format lay it out, written here apart from the code
// under test: the weight_map's shards (or model.safetensors), each an
// 8-byte little-endian header length, a JSON header and the data; F32 and
// BF16 values as float32 (a bfloat16 is the upper half of a float32).
func specReader(t *testing.T, dir string) (tensors map[string][]float32, dtypes map[string]string, shards []string) {
	t.Helper()
	files := []string{"model.safetensors"}
	want := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json")); err == nil {
		var idx struct {
			Metadata struct {
				TotalSize int64 `json:"total_size"`
			} `json:"metadata"`
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		files = nil
		for _, f := range idx.WeightMap {
			if !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
		slices.Sort(files)
		want = idx.WeightMap
		defer func() {
			var total int64
			for name, v := range tensors {
				total += int64(len(v)) * map[string]int64{"F32": 4, "BF16": 2}[dtypes[name]]
			}
			if total != idx.Metadata.TotalSize {
				t.Fatalf("index total_size %d, the tensors hold %d bytes", idx.Metadata.TotalSize, total)
			}
		}()
	}
	tensors, dtypes = map[string][]float32{}, map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		n := binary.LittleEndian.Uint64(b)
		var header map[string]json.RawMessage
		if err := json.Unmarshal(b[8:8+n], &header); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		data := b[8+n:]
		end := 0
		for name, raw := range header {
			if name == "__metadata__" {
				continue
			}
			var e struct {
				Dtype   string
				Shape   []int
				Offsets [2]int `json:"data_offsets"`
			}
			json.Unmarshal(raw, &e)
			if w, ok := want[name]; len(want) > 0 && (!ok || w != f) {
				t.Fatalf("%s holds %s, the index puts it in %q", f, name, w)
			}
			var v []float32
			for i := e.Offsets[0]; i < e.Offsets[1]; {
				switch e.Dtype {
				case "F32":
					v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(data[i:])))
					i += 4
				case "BF16":
					v = append(v, math.Float32frombits(uint32(binary.LittleEndian.Uint16(data[i:]))<<16))
					i += 2
				default:
					t.Fatalf("%s: %s is %s", f, name, e.Dtype)
				}
			}
			n := 1
			for _, d := range e.Shape {
				n *= d
			}
			if n != len(v) {
				t.Fatalf("%s: %s shape %v, %d values", f, name, e.Shape, len(v))
			}
			end = max(end, e.Offsets[1])
			tensors[name], dtypes[name] = v, e.Dtype
		}
		if end != len(data) {
			t.Fatalf("%s: %d data bytes, the tensors end at %d", f, len(data), end)
		}
		shards = append(shards, f)
	}
	return tensors, dtypes, shards
}

// bf16Nearest is x rounded to 8 significant bits, ties to even, by
// math/big (the normal range; the weights here are far from its ends).
func bf16Nearest(x float32) float32 {
	r := new(big.Float).SetMode(big.ToNearestEven).SetPrec(8)
	r.Set(big.NewFloat(float64(x)))
	f, _ := r.Float32()
	return f
}

// logitsOf runs the model on ids and returns its logits.
func logitsOf(t *testing.T, m Model, ids []int32) []float32 {
	t.Helper()
	c := m.Config()
	if _, err := m.Forward(ids, nil, 1, len(ids), nil); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(ids)*c.Padded)
	m.Ops().Download(out, m.Logits())
	return out
}

// TestExportHFFolder: an export in bf16 with a tiny shard size is several
// shards and an index that an independent reader follows, each value the
// nearest bfloat16 of the model's; config.json and generation_config.json
// name the tokenizer's BOS and EOS; the tokenizer files are written beside;
// and the folder loads back (as --init-from loads it) into a model whose
// logits are those of the model with its weights so rounded. In fp32 one
// model.safetensors round-trips the logits exactly.
func TestExportHFFolder(t *testing.T) {
	for _, cfg := range []ModelConfig{tinyLlama, {Vocab: 61, Padded: 64, Layers: 2, Heads: 2, Channels: 8, MaxT: 8}} {
		ops := cpu.New()
		m, err := NewModel(ops, cfg, cfg.InitParams(7))
		if err != nil {
			t.Fatal(err)
		}
		host := make([]float32, cfg.NumParams())
		ops.Download(host, m.Params())
		cfg.HeldToTorch(host) // as the families' mappings read it
		ids := []int32{1, 5, 9, 60, 2, 33, 17, 4}
		for _, dtype := range []string{"bf16", "fp32"} {
			dir := filepath.Join(t.TempDir(), "hf")
			o := ExportOptions{DType: dtype, Special: &SpecialTokens{BOS: 1, EOS: 2}, Files: map[string][]byte{"tokenizer.json": []byte(`{"x": 1}`)}}
			if dtype == "bf16" {
				o.MaxShardSize = 1500
			}
			if err := ExportHF(m, dir, o); err != nil {
				t.Fatal(err)
			}
			tensors, dtypes, shards := specReader(t, dir)
			names, _, data := cfg.family().hf.export(cfg, m.Table(), host)
			for i, name := range names {
				got := tensors[name]
				if len(got) != len(data[i]) {
					t.Fatalf("%s: %d values, want %d", name, len(got), len(data[i]))
				}
				for k, x := range data[i] {
					want := x
					if dtype == "bf16" {
						want = bf16Nearest(x)
					}
					if got[k] != want || dtypes[name] != map[string]string{"bf16": "BF16", "fp32": "F32"}[dtype] {
						t.Fatalf("%s %s[%d]: %v (%s), want %v", dtype, name, k, got[k], dtypes[name], want)
					}
				}
			}
			if dtype == "bf16" && len(shards) < 3 || dtype == "fp32" && !slices.Equal(shards, []string{"model.safetensors"}) {
				t.Fatalf("%s: shards %v", dtype, shards)
			}
			var hc, gc map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			json.Unmarshal(b, &hc)
			b, _ = os.ReadFile(filepath.Join(dir, "generation_config.json"))
			json.Unmarshal(b, &gc)
			if hc["bos_token_id"] != 1.0 || hc["eos_token_id"] != 2.0 || gc["bos_token_id"] != 1.0 || gc["eos_token_id"] != 2.0 ||
				hc["torch_dtype"] != map[string]string{"bf16": "bfloat16", "fp32": "float32"}[dtype] {
				t.Fatalf("config.json %v, generation_config.json %v", hc, gc)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json")); string(b) != `{"x": 1}` {
				t.Fatalf("tokenizer.json %q", b)
			}
			n, _ := NewModel(ops, cfg, nil)
			if err := LoadHF(n, dir); err != nil {
				t.Fatal(err)
			}
			ref := m
			if dtype == "bf16" {
				rounded := make([]float32, len(host))
				for i, x := range host {
					rounded[i] = bf16Nearest(x)
				}
				cfg.TorchToHeld(rounded)
				ref, _ = NewModel(ops, cfg, rounded)
			}
			want, got := logitsOf(t, ref, ids), logitsOf(t, n, ids)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s %s: logit %d: %v after export and load, %v", cfg.Arch, dtype, i, got[i], want[i])
				}
			}
		}
	}
}

// TestExportHFReplacesItsShards: exporting again into an earlier export
// with fewer shards removes the shards and index it no longer writes (a
// stale index would name the old shards), and a folder of someone's
// tokenizer files without an export's config.json is refused.
func TestExportHFReplacesItsShards(t *testing.T) {
	ops := cpu.New()
	m, _ := NewModel(ops, tinyLlama, tinyLlama.InitParams(1))
	dir := t.TempDir()
	if err := ExportHF(m, dir, ExportOptions{MaxShardSize: 2000}); err != nil {
		t.Fatal(err)
	}
	if err := ExportHF(m, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"config.json", "generation_config.json", "model.safetensors"}) {
		t.Fatalf("after exporting again unsharded: %v", names)
	}
	mine := t.TempDir()
	os.WriteFile(filepath.Join(mine, "tokenizer.json"), []byte("{}"), 0o644)
	if err := ExportHF(m, mine, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("export into a tokenizer folder: %v", err)
	}
	if err := ExportHF(m, t.TempDir(), ExportOptions{DType: "f16"}); err == nil || !strings.Contains(err.Error(), "f16") {
		t.Fatalf("dtype f16: %v", err)
	}
}
