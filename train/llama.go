package train

import (
	"fmt"
	"strings"
)

// llamaFamily is Llama (Touvron et al. 2023, as Hugging Face's
// LlamaForCausalLM; TinyLlama's shapes): RMSNorm, rotary embeddings,
// grouped-query attention, a SwiGLU MLP, no biases and an untied LM head.
var llamaFamily = Family{
	Arch: "llama",
	check: func(c ModelConfig) error {
		// named by config.json's keys, as the user wrote them
		var bad []string
		if c.FF <= 0 {
			bad = append(bad, fmt.Sprintf("model.ff = %d: want an MLP width above 0", c.FF))
		}
		if c.Channels/c.Heads%2 != 0 {
			bad = append(bad, fmt.Sprintf("model.channels/model.heads = %d: want an even head size (rotary embeddings turn pairs)", c.Channels/c.Heads))
		}
		if c.RopeTheta <= 0 {
			bad = append(bad, fmt.Sprintf("model.rope_theta = %g: want a rotary base above 0", c.RopeTheta))
		}
		if c.NormEps <= 0 {
			bad = append(bad, fmt.Sprintf("model.norm_eps = %g: want a norm epsilon above 0", c.NormEps))
		}
		if bad != nil {
			return fmt.Errorf("train: Llama shape: %s", strings.Join(bad, "; "))
		}
		return nil
	},
	ff:     func(c ModelConfig) int { return c.FF },
	layout: llamaLayout,
	norm:   rmsNorm,
	rope:   true,
	mlp:    swigluMLP,
	blockFLOPs: func(c ModelConfig, nh, nkv, ff, T float64) float64 {
		return denseBlockFLOPs(c, nh, nkv, ff, T, 3) // gate, up and down
	},
	memory: func(m ModelConfig) (params, perTok, weights float64) {
		C, L, Vp := float64(m.Channels), float64(m.Layers), float64(m.Padded)
		NH, KV := float64(m.Heads), float64(m.KV())
		HS := C / NH
		FF := float64(m.FF)
		W := (NH + 2*KV) * HS
		block := C*W + C*C + 2*FF*C + FF*C + 2*C
		params = 2*Vp*C + L*block + C
		// per block: out, x1, n1, atty, n2 (C each), n1r, n2r, qkv (W),
		// h (2FF), act (FF); outside: x0, nf, dres, dtmp, dnf, logits,
		// losses, nfr; scratch: dqkv, datty, dh, dact
		perTok = L*(5*C+2+W+3*FF) + 5*C + Vp + 2 + W + C + 3*FF
		weights = 2*block + C*C // gathered weights and the weight-gradient gather
		return
	},
	hf: hfFamily{class: "LlamaForCausalLM", modelType: "llama", load: loadLlamaHF, export: exportLlamaHF, config: llamaHFConfig, fields: llamaHFFields},
	recipe: func(c *Config) { // the paper's TinyLlama recipe
		c.LR, c.Decay = 4e-4, DecayCosine
	},
}

// llamaLayout is Llama's parameter table: the token embedding, then each
// block's six tensors, the final norm and the (untied) LM head. The q, k
// and v projections are one tensor (queries of all heads, then keys, then
// values), as are the gate and up projections (gate rows, then up rows);
// the Hugging Face import and export split them. Weights are normal with
// std 0.02 (Hugging Face's initializer_range), norm weights one; there are
// no biases.
func llamaLayout(cfg ModelConfig) ([]Param, modelView) {
	C, L, NH, NKV, FF := cfg.Channels, cfg.Layers, cfg.Heads, cfg.KV(), cfg.FF
	HS := C / NH
	const std = 0.02
	var t table
	v := modelView{positions: -1, blocks: make([]blockView, L)}
	v.tokens = t.add("model.embed_tokens.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[v.tokens].Vocab = true
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		b := &v.blocks[l]
		b.norm1 = normView{t.add(p+"input_layernorm.weight", l, false, 0, true, unitNone, C), -1}
		b.qkv = linearView{t.add(p+"self_attn.qkv_proj.weight", l, true, std, false, unitQKVRows, (NH+2*NKV)*HS, C), -1}
		b.proj = linearView{t.add(p+"self_attn.o_proj.weight", l, true, std, false, unitHeadCols, C, NH*HS), -1}
		b.norm2 = normView{t.add(p+"post_attention_layernorm.weight", l, false, 0, true, unitNone, C), -1}
		b.up = linearView{t.add(p+"mlp.gate_up_proj.weight", l, true, std, false, unitGateUpRows, 2*FF, C), -1}
		b.down = linearView{t.add(p+"mlp.down_proj.weight", l, true, std, false, unitNeuronCols, C, FF), -1}
	}
	v.norm = normView{t.add("model.norm.weight", -1, false, 0, true, unitNone, C), -1}
	v.head = t.add("lm_head.weight", -1, true, std, false, unitNone, cfg.Padded, C)
	t[v.head].Vocab = true
	return t, v
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
func loadLlamaHF(c ModelConfig, table []Param, src *hfCheckpoint, host []float32) error {
	C := c.Channels
	for _, e := range table {
		dst := host[e.Offset : e.Offset+e.Size]
		if e.Vocab {
			name := e.Name
			if _, ok := src.tensors[name]; !ok && name == "lm_head.weight" {
				name = "model.embed_tokens.weight" // tied
			}
			v, sh, err := src.get(name)
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			if v == nil {
				return fmt.Errorf("train: %s lacks %s (a LlamaForCausalLM of this size?)", src.path, e.Name)
			}
			if len(sh) != 2 || sh[1] != C || sh[0] != c.Vocab {
				return fmt.Errorf("train: %s: %s %v, the model [%d %d]", src.file(name), name, sh, c.Vocab, C)
			}
			copy(dst, v)
			continue
		}
		prefix, parts, rows := llamaParts(c, e.Name)
		off := 0
		for i, part := range parts {
			v, sh, err := src.get(prefix + part)
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			if v == nil {
				return fmt.Errorf("train: %s lacks %s (a LlamaForCausalLM of this size?)", src.path, prefix+part)
			}
			want := e.Size
			if rows != nil {
				want = rows[i] * C
			}
			if len(v) != want {
				return fmt.Errorf("train: %s: %s %v has %d values, the model %d", src.file(prefix+part), prefix+part, sh, len(v), want)
			}
			copy(dst[off:], v)
			off += len(v)
		}
	}
	return nil
}

// exportLlamaHF lists LlamaForCausalLM's tensors: fused tensors split, the
// vocabulary's padding rows dropped.
func exportLlamaHF(c ModelConfig, table []Param, host []float32) (names []string, shapes [][]int, data [][]float32) {
	C := c.Channels
	for _, e := range table {
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
	return names, shapes, data
}

func llamaHFConfig(c ModelConfig) map[string]any {
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": c.Vocab, "hidden_size": c.Channels, "intermediate_size": c.FF, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KV(), "max_position_embeddings": c.MaxT,
		"rms_norm_eps": c.NormEps, "rope_theta": c.RopeTheta, "hidden_act": "silu", "tie_word_embeddings": false,
		"attention_bias": false, "mlp_bias": false, "initializer_range": 0.02,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
	}
}

// llamaHFFields are LlamaConfig's shape fields, with transformers'
// defaults where they hold for every checkpoint (key/value heads default
// to the query heads).
func llamaHFFields(c ModelConfig) []hfField {
	return []hfField{
		{key: "vocab_size", want: float64(c.Vocab), def: 32000.0, ours: "vocab"},
		{key: "hidden_size", want: float64(c.Channels), def: 4096.0, ours: "channels"},
		{key: "intermediate_size", want: float64(c.FF), def: 11008.0, ours: "ff"},
		{key: "num_hidden_layers", want: float64(c.Layers), def: 32.0, ours: "layers"},
		{key: "num_attention_heads", want: float64(c.Heads), def: 32.0, ours: "heads"},
		{key: "num_key_value_heads", want: float64(c.KV()), defKey: "num_attention_heads", def: 32.0, ours: "kv_heads"},
		{key: "rope_theta", want: c.RopeTheta, def: 10000.0, ours: "rope_theta"},
		{key: "rms_norm_eps", want: c.NormEps, def: 1e-6, ours: "norm_eps"},
		{key: "max_position_embeddings", want: float64(c.MaxT), def: 2048.0, atLeast: true, ours: "max_t"},
		{key: "head_dim", want: float64(c.Channels / c.Heads), ours: "channels / heads"},
		{key: "hidden_act", text: "silu", def: "silu", ours: "activation"},
		{key: "rope_scaling", null: true, ours: "rotary scaling"},
		{key: "attention_bias", off: true, ours: "attention biases"},
		{key: "mlp_bias", off: true, ours: "MLP biases"},
	}
}
