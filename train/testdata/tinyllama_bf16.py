"""Writes a TinyLlama-shaped checkpoint at tiny size as Hugging Face lays one
out: config.json (TinyLlama-1.1B's fields, tiny sizes), BF16 weights in two
shards and model.safetensors.index.json; and, beside the folder, the same
values widened to F32 in one file, for TestLoadHFTinyLlamaBF16.

The safetensors bytes are written here with struct (no safetensors package:
Debian has none), following the format's spec: an 8-byte little-endian
header length, a JSON header of dtype, shape and data_offsets, the data.

    /usr/bin/python3 train/testdata/tinyllama_bf16.py train/testdata
"""
import json
import os
import struct
import sys

import torch

VOCAB, HIDDEN, FF, LAYERS, HEADS, KV = 61, 16, 24, 2, 4, 2
HS = HIDDEN // HEADS


def tensors():
    g = torch.Generator().manual_seed(21)
    out = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=g) * 0.5}
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        out[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(HIDDEN, generator=g)
        out[p + "self_attn.q_proj.weight"] = torch.randn(HEADS * HS, HIDDEN, generator=g) * 0.2
        out[p + "self_attn.k_proj.weight"] = torch.randn(KV * HS, HIDDEN, generator=g) * 0.2
        out[p + "self_attn.v_proj.weight"] = torch.randn(KV * HS, HIDDEN, generator=g) * 0.2
        out[p + "self_attn.o_proj.weight"] = torch.randn(HIDDEN, HEADS * HS, generator=g) * 0.2
        out[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(HIDDEN, generator=g)
        out[p + "mlp.gate_proj.weight"] = torch.randn(FF, HIDDEN, generator=g) * 0.2
        out[p + "mlp.up_proj.weight"] = torch.randn(FF, HIDDEN, generator=g) * 0.2
        out[p + "mlp.down_proj.weight"] = torch.randn(HIDDEN, FF, generator=g) * 0.2
    out["model.norm.weight"] = 1 + 0.1 * torch.randn(HIDDEN, generator=g)
    out["lm_head.weight"] = torch.randn(VOCAB, HIDDEN, generator=g) * 0.5
    # a subnormal, an infinity-free extreme and a negative zero, so that the
    # conversion's edges are in a real load
    out["model.norm.weight"][0] = 1e-40
    out["model.norm.weight"][1] = -0.0
    out["model.norm.weight"][2] = 3e38
    return {k: v.to(torch.bfloat16) for k, v in out.items()}


def save(path, ts, dtype, torch_dtype, meta):
    header, off, blobs = {"__metadata__": meta}, 0, []
    for name, t in ts.items():
        b = t.to(torch_dtype).contiguous().view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main(out):
    ts = tensors()
    d = os.path.join(out, "tinyllama-bf16")
    os.makedirs(d, exist_ok=True)
    names = list(ts)
    half = len(names) // 2
    shards = [names[:half], names[half:]]
    weight_map = {}
    total = 0
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save(os.path.join(d, fname), {n: ts[n] for n in part}, "BF16", torch.bfloat16, {"format": "pt"})
        for n in part:
            weight_map[n] = fname
            total += 2 * ts[n].numel()
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": FF,
        "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "num_key_value_heads": KV, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.35.0", "use_cache": True, "vocab_size": VOCAB,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save(os.path.join(out, "tinyllama-f32.safetensors"), ts, "F32", torch.float32, {"format": "pt"})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
