package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/estkit/estkit/internal/durable"
)

// conv1D: Hugging Face's GPT-2 stores these weights as Conv1D, [in, out],
// the transpose of the table's Linear convention.
func conv1D(name string) bool {
	for _, s := range []string{"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

func transpose(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}

// LoadHF sets a model's parameters from a Hugging Face model.safetensors:
// GPT2LMHeadModel's for GPT-2, LlamaForCausalLM's for Llama.
func LoadHF(m Model, path string) error {
	ts, shapes, err := readSafetensors(path)
	if err != nil {
		return fmt.Errorf("train: --init-from: %w", err)
	}
	if m.Config().IsLlama() {
		return loadLlamaHF(m.base(), path, ts, shapes)
	}
	return loadGPT2HF(m.base(), path, ts, shapes)
}

// ExportHF writes dir/model.safetensors and dir/config.json that Hugging
// Face transformers loads as GPT2LMHeadModel or LlamaForCausalLM.
//
// dir must be absent, empty, or hold only an earlier export's two files:
// anything else (a run directory above all, whose config.json the export's
// would replace) is refused, naming what is there.
func ExportHF(m Model, dir string) error {
	if err := checkExportDir(dir); err != nil {
		return err
	}
	if m.Config().IsLlama() {
		return exportLlamaHF(m.base(), dir)
	}
	return exportGPT2HF(m.base(), dir)
}

// loadGPT2HF reads GPT2LMHeadModel tensors (names with or without
// "transformer."; Conv1D weights transposed; wte padded with zero rows; wpe
// may be longer than MaxT).
func loadGPT2HF(g *core, path string, ts map[string][]float32, shapes map[string][]int) error {
	get := func(name string) ([]float32, []int, bool) {
		if v, ok := ts["transformer."+name]; ok {
			return v, shapes["transformer."+name], true
		}
		v, ok := ts[name]
		return v, shapes[name], ok
	}
	C := g.Cfg.Channels
	host := make([]float32, g.Cfg.NumParams())
	for _, e := range g.table {
		v, sh, ok := get(e.Name)
		if !ok {
			return fmt.Errorf("train: %s lacks %s (a GPT2LMHeadModel of this size?)", path, e.Name)
		}
		dst := host[e.Offset : e.Offset+e.Size]
		switch {
		case e.Name == "wte.weight":
			if len(sh) != 2 || sh[1] != C || sh[0] != g.Cfg.Vocab {
				return fmt.Errorf("train: %s: wte.weight %v, the model [%d %d]", path, sh, g.Cfg.Vocab, C)
			}
			copy(dst, v)
		case e.Name == "wpe.weight":
			if len(sh) != 2 || sh[1] != C || sh[0] < g.Cfg.MaxT {
				return fmt.Errorf("train: %s: wpe.weight %v, the model needs [≥%d %d]", path, sh, g.Cfg.MaxT, C)
			}
			copy(dst, v[:g.Cfg.MaxT*C])
		case conv1D(e.Name):
			if len(sh) != 2 || sh[0] != e.Shape[1] || sh[1] != e.Shape[0] {
				return fmt.Errorf("train: %s: %s %v, the model (Conv1D) [%d %d]", path, e.Name, sh, e.Shape[1], e.Shape[0])
			}
			copy(dst, transpose(v, sh[0], sh[1]))
		default:
			if len(v) != e.Size {
				return fmt.Errorf("train: %s: %s has %d values, the model %d", path, e.Name, len(v), e.Size)
			}
			copy(dst, v)
		}
	}
	g.ops.Upload(g.Params, host)
	g.paramsChanged()
	return nil
}

// exportGPT2HF writes GPT2LMHeadModel's tensors and configuration.
func exportGPT2HF(g *core, dir string) error {
	host := make([]float32, g.Cfg.NumParams())
	g.ops.Download(host, g.Params)
	C := g.Cfg.Channels
	var names []string
	var shapes [][]int
	var data [][]float32
	for _, e := range g.table {
		v := host[e.Offset : e.Offset+e.Size]
		shape := e.Shape
		switch {
		case e.Name == "wte.weight":
			v, shape = v[:g.Cfg.Vocab*C], []int{g.Cfg.Vocab, C}
		case conv1D(e.Name):
			v, shape = transpose(v, e.Shape[0], e.Shape[1]), []int{e.Shape[1], e.Shape[0]}
		}
		names = append(names, "transformer."+e.Name)
		shapes = append(shapes, shape)
		data = append(data, v)
	}
	if err := writeSafetensors(filepath.Join(dir, "model.safetensors"), names, shapes, data, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	cfg := map[string]any{
		"architectures": []string{"GPT2LMHeadModel"}, "model_type": "gpt2",
		"vocab_size": g.Cfg.Vocab, "n_positions": g.Cfg.MaxT, "n_embd": C, "n_layer": g.Cfg.Layers, "n_head": g.Cfg.Heads,
		"n_inner": nil, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
		"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": true,
		"bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32",
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := durable.WriteFile(dir, "config.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// llamaParts are the Hugging Face tensors a fused Llama tensor holds, by
// rows: name suffixes and their row counts.
func llamaParts(c ModelConfig, name string) (prefix string, parts []string, rows []int) {
	HS := c.Channels / c.Heads
	if p, ok := strings.CutSuffix(name, "self_attn.qkv_proj.weight"); ok {
		return p, []string{"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"},
			[]int{c.Heads * HS, c.KV() * HS, c.KV() * HS}
	}
	if p, ok := strings.CutSuffix(name, "mlp.gate_up_proj.weight"); ok {
		return p, []string{"mlp.gate_proj.weight", "mlp.up_proj.weight"}, []int{c.FF, c.FF}
	}
	return "", []string{name}, nil
}

// loadLlamaHF reads LlamaForCausalLM tensors: q, k and v (and gate and up)
// fused by rows into the table's tensors, the vocabulary padded with zero
// rows. Hugging Face's q and k weights are already in the rotary layout
// estkit uses (element i pairs with i + HS/2), so none is permuted.
func loadLlamaHF(g *core, path string, ts map[string][]float32, shapes map[string][]int) error {
	c := g.Cfg
	C := c.Channels
	host := make([]float32, c.NumParams())
	for _, e := range g.table {
		dst := host[e.Offset : e.Offset+e.Size]
		if e.Vocab {
			v, sh := ts[e.Name], shapes[e.Name]
			if v == nil && e.Name == "lm_head.weight" {
				v, sh = ts["model.embed_tokens.weight"], shapes["model.embed_tokens.weight"] // tied
			}
			if v == nil {
				return fmt.Errorf("train: %s lacks %s (a LlamaForCausalLM of this size?)", path, e.Name)
			}
			if len(sh) != 2 || sh[1] != C || sh[0] != c.Vocab {
				return fmt.Errorf("train: %s: %s %v, the model [%d %d]", path, e.Name, sh, c.Vocab, C)
			}
			copy(dst, v)
			continue
		}
		prefix, parts, rows := llamaParts(c, e.Name)
		off := 0
		for i, part := range parts {
			v, ok := ts[prefix+part]
			if !ok {
				return fmt.Errorf("train: %s lacks %s (a LlamaForCausalLM of this size?)", path, prefix+part)
			}
			want := e.Size
			if rows != nil {
				want = rows[i] * C
			}
			if len(v) != want {
				return fmt.Errorf("train: %s: %s %v has %d values, the model %d", path, prefix+part, shapes[prefix+part], len(v), want)
			}
			copy(dst[off:], v)
			off += len(v)
		}
	}
	g.ops.Upload(g.Params, host)
	g.paramsChanged()
	return nil
}

// exportLlamaHF writes LlamaForCausalLM's tensors (fused tensors split, the
// vocabulary's padding rows dropped) and configuration.
func exportLlamaHF(g *core, dir string) error {
	c := g.Cfg
	C := c.Channels
	host := make([]float32, c.NumParams())
	g.ops.Download(host, g.Params)
	var names []string
	var shapes [][]int
	var data [][]float32
	for _, e := range g.table {
		v := host[e.Offset : e.Offset+e.Size]
		if e.Vocab {
			names, shapes, data = append(names, e.Name), append(shapes, []int{c.Vocab, C}), append(data, v[:c.Vocab*C])
			continue
		}
		prefix, parts, rows := llamaParts(c, e.Name)
		if rows == nil {
			names, shapes, data = append(names, e.Name), append(shapes, e.Shape), append(data, v)
			continue
		}
		off := 0
		for i, part := range parts {
			names, shapes, data = append(names, prefix+part), append(shapes, []int{rows[i], C}), append(data, v[off:off+rows[i]*C])
			off += rows[i] * C
		}
	}
	if err := writeSafetensors(filepath.Join(dir, "model.safetensors"), names, shapes, data, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": c.Vocab, "hidden_size": C, "intermediate_size": c.FF, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KV(), "max_position_embeddings": c.MaxT,
		"rms_norm_eps": c.NormEps, "rope_theta": c.RopeTheta, "hidden_act": "silu", "tie_word_embeddings": false,
		"attention_bias": false, "mlp_bias": false, "initializer_range": 0.02,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := durable.WriteFile(dir, "config.json", append(b, '\n')); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// exportFiles are the files ExportHF writes.
var exportFiles = []string{"model.safetensors", "config.json"}

// checkExportDir refuses an export directory that holds anything an
// export did not write.
func checkExportDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("train: export: %w", err)
	}
	if s, err := surveyRun(dir); err == nil && s.holdsRun() {
		return fmt.Errorf("train: export: %s is a run directory: export writes a Hugging Face model into a directory of its own (its config.json would replace the run's)", dir)
	}
	var foreign []string
	for _, e := range ents {
		if !slices.Contains(exportFiles, strings.TrimPrefix(e.Name(), durable.TmpPrefix)) || !e.Type().IsRegular() {
			foreign = append(foreign, e.Name())
			continue
		}
		if e.Name() != "config.json" {
			continue
		}
		// an earlier export's: a Hugging Face configuration of a model class export writes
		var c struct {
			Architectures []string `json:"architectures"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("train: export: %w", err)
		}
		if json.Unmarshal(b, &c) != nil || len(c.Architectures) != 1 || (c.Architectures[0] != "GPT2LMHeadModel" && c.Architectures[0] != "LlamaForCausalLM") {
			foreign = append(foreign, "config.json (not an export's)")
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("train: export: %s holds files export did not write (%s): give an empty or new directory", dir, describe(foreign))
	}
	return nil
}
