package train

import (
	"encoding/json"
	"fmt"
	"path/filepath"
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

// loadHF sets the parameters from a Hugging Face GPT2LMHeadModel
// model.safetensors (names with or without "transformer."; Conv1D weights
// transposed; wte padded with zero rows; wpe may be longer than MaxT).
func (g *GPT2) loadHF(path string) error {
	ts, shapes, err := readSafetensors(path)
	if err != nil {
		return fmt.Errorf("train: --init-from: %w", err)
	}
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
	return nil
}

// ExportHF writes dir/model.safetensors and dir/config.json that Hugging
// Face transformers loads as GPT2LMHeadModel.
func (g *GPT2) ExportHF(dir string) error {
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
