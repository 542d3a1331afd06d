package train

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// gpt2Family is GPT-2 (Radford et al. 2019, as Hugging Face's
// GPT2LMHeadModel and nanoGPT): learned positions, LayerNorm, biases
// everywhere, a GELU MLP four times as wide as the model, and the LM head
// tied to the token embedding.
var gpt2Family = Family{
	Arch: "gpt2",
	check: func(c ModelConfig) error {
		if c.KV() != c.Heads {
			return errors.New("train: GPT-2 has as many key/value heads as query heads")
		}
		return nil
	},
	ff:     func(c ModelConfig) int { return 4 * c.Channels },
	layout: gpt2Layout,
	norm:   layerNorm,
	mlp:    geluMLP,
	blockFLOPs: func(c ModelConfig, nh, nkv, ff, T float64) float64 {
		return denseBlockFLOPs(c, nh, nkv, ff, T, 2) // c_fc and c_proj
	},
	memory: func(m ModelConfig) (params, perTok, weights float64) {
		C, L, Vp := float64(m.Channels), float64(m.Layers), float64(m.Padded)
		MaxT := float64(m.MaxT)
		block := 12*C*C + 13*C
		params = Vp*C + MaxT*C + L*block + 2*C
		// per block: out, x1, ln1, atty, ln2 (C each), qkv (3C), fch,
		// fcg (4C each), ln1m, ln1r, ln2m, ln2r; outside: x0, lnf, dres,
		// dtmp, dlnf, logits, losses, lnfm, lnfr; scratch: dqkv, datty,
		// dfch, dfcg
		perTok = L*(16*C+4) + 5*C + Vp + 3 + 3*C + C + 8*C
		weights = 2*block + 4*C*C
		return
	},
	hf: hfFamily{class: "GPT2LMHeadModel", modelType: "gpt2", load: loadGPT2HF, export: exportGPT2HF, config: gpt2HFConfig, fields: gpt2HFFields},
}

// gpt2Layout is GPT-2's parameter table: wte, wpe, then each block's
// twelve tensors, then ln_f. Weights are normal (std 0.02, the residual
// projections 0.02/√(2L)), biases zero, LayerNorm weights one.
func gpt2Layout(cfg ModelConfig) ([]Param, modelView) {
	C, L := cfg.Channels, cfg.Layers
	std := 0.02
	proj := 0.02 / math.Sqrt(2*float64(L))
	var t table
	v := modelView{blocks: make([]blockView, L)}
	v.tokens = t.add("wte.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[v.tokens].Vocab = true
	v.head = v.tokens // tied
	v.positions = t.add("wpe.weight", -1, true, std, false, unitNone, cfg.MaxT, C)
	for l := 0; l < L; l++ {
		h := fmt.Sprintf("h.%d.", l)
		b := &v.blocks[l]
		b.norm1.w = t.add(h+"ln_1.weight", l, false, 0, true, unitNone, C)
		b.norm1.b = t.add(h+"ln_1.bias", l, false, 0, false, unitNone, C)
		b.qkv.w = t.add(h+"attn.c_attn.weight", l, true, std, false, unitQKVRows, 3*C, C)
		b.qkv.b = t.add(h+"attn.c_attn.bias", l, false, 0, false, unitQKVRows, 3*C)
		b.proj.w = t.add(h+"attn.c_proj.weight", l, true, proj, false, unitHeadCols, C, C)
		b.proj.b = t.add(h+"attn.c_proj.bias", l, false, 0, false, unitNone, C)
		b.norm2.w = t.add(h+"ln_2.weight", l, false, 0, true, unitNone, C)
		b.norm2.b = t.add(h+"ln_2.bias", l, false, 0, false, unitNone, C)
		b.up.w = t.add(h+"mlp.c_fc.weight", l, true, std, false, unitNeuronRows, 4*C, C)
		b.up.b = t.add(h+"mlp.c_fc.bias", l, false, 0, false, unitNeuronRows, 4*C)
		b.down.w = t.add(h+"mlp.c_proj.weight", l, true, proj, false, unitNeuronCols, C, 4*C)
		b.down.b = t.add(h+"mlp.c_proj.bias", l, false, 0, false, unitNone, C)
	}
	v.norm.w = t.add("ln_f.weight", -1, false, 0, true, unitNone, C)
	v.norm.b = t.add("ln_f.bias", -1, false, 0, false, unitNone, C)
	return t, v
}

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

// loadGPT2HF reads GPT2LMHeadModel tensors (names with or without
// "transformer."; Conv1D weights transposed; wte padded with zero rows; wpe
// may be longer than MaxT).
func loadGPT2HF(c ModelConfig, table []Param, src *hfCheckpoint, host []float32) error {
	get := func(name string) (string, []float32, []int, error) {
		if _, ok := src.tensors["transformer."+name]; ok {
			name = "transformer." + name
		}
		v, sh, err := src.get(name)
		return name, v, sh, err
	}
	C := c.Channels
	for _, e := range table {
		name, v, sh, err := get(e.Name)
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		if v == nil {
			return fmt.Errorf("train: %s lacks %s (a GPT2LMHeadModel of this size?)", src.path, e.Name)
		}
		path := src.file(name)
		dst := host[e.Offset : e.Offset+e.Size]
		switch {
		case e.Name == "wte.weight":
			if len(sh) != 2 || sh[1] != C || sh[0] != c.Vocab {
				return fmt.Errorf("train: %s: wte.weight %v, the model [%d %d]", path, sh, c.Vocab, C)
			}
			copy(dst, v)
		case e.Name == "wpe.weight":
			if len(sh) != 2 || sh[1] != C || sh[0] < c.MaxT {
				return fmt.Errorf("train: %s: wpe.weight %v, the model needs [≥%d %d]", path, sh, c.MaxT, C)
			}
			copy(dst, v[:c.MaxT*C])
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
	return nil
}

// exportGPT2HF lists GPT2LMHeadModel's tensors: names under
// "transformer.", Conv1D weights transposed, wte without its padding rows.
func exportGPT2HF(c ModelConfig, table []Param, host []float32) (names []string, shapes [][]int, data [][]float32) {
	C := c.Channels
	for _, e := range table {
		v := host[e.Offset : e.Offset+e.Size]
		shape := e.Shape
		switch {
		case e.Name == "wte.weight":
			v, shape = v[:c.Vocab*C], []int{c.Vocab, C}
		case conv1D(e.Name):
			v, shape = transpose(v, e.Shape[0], e.Shape[1]), []int{e.Shape[1], e.Shape[0]}
		}
		names = append(names, "transformer."+e.Name)
		shapes = append(shapes, shape)
		data = append(data, v)
	}
	return names, shapes, data
}

func gpt2HFConfig(c ModelConfig) map[string]any {
	return map[string]any{
		"architectures": []string{"GPT2LMHeadModel"}, "model_type": "gpt2",
		"vocab_size": c.Vocab, "n_positions": c.MaxT, "n_embd": c.Channels, "n_layer": c.Layers, "n_head": c.Heads,
		"n_inner": nil, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
		"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "tie_word_embeddings": true,
		"bos_token_id": 50256, "eos_token_id": 50256, "torch_dtype": "float32",
	}
}

// gpt2HFFields are GPT2Config's shape fields, with transformers' defaults.
func gpt2HFFields(c ModelConfig) []hfField {
	return []hfField{
		{key: "vocab_size", want: float64(c.Vocab), def: 50257.0, ours: "vocab"},
		{key: "n_embd", want: float64(c.Channels), def: 768.0, ours: "channels"},
		{key: "n_layer", want: float64(c.Layers), def: 12.0, ours: "layers"},
		{key: "n_head", want: float64(c.Heads), def: 12.0, ours: "heads"},
		{key: "n_positions", want: float64(c.MaxT), def: 1024.0, atLeast: true, ours: "max_t"},
		{key: "n_inner", want: float64(4 * c.Channels), ours: "MLP width 4 × channels"},
		{key: "activation_function", text: "gelu_new", def: "gelu_new", ours: "activation"},
	}
}
