"""PyTorch reference for estkit's Llama with Evolving Subnetwork Training.

Written independently of the Go code, in the shape of Hugging Face's
LlamaForCausalLM: separate q/k/v and gate/up projections, RMSNorm, rotary
embeddings (element i pairs with i + HS/2), grouped-query attention by
repeating key/value heads, SwiGLU, an untied LM head. The subnetwork is
expressed with masks and 1/p scaling on the full model: query head outputs
and MLP activations masked and scaled before the output projections;
skipped blocks are the identity. A key/value head none of whose query heads
is selected is then unused, so sampling whole groups and sampling query
heads within every group are both masks over query heads.

For a tiny configuration it writes a JSON fixture per case: the parameters
(in estkit's table layout: q, k, v rows fused, gate and up rows fused), ids
and targets, the selection, and PyTorch's logits, loss, every parameter's
gradient, and the parameters after 3 AdamW steps on the same batch.

    python3 llama_ref.py OUTDIR      (Debian: python3-torch)
"""
import json
import math
import os
import sys

import torch

torch.manual_seed(4321)
torch.use_deterministic_algorithms(True)

V, VP, L, NH, NKV, C, FF, T, B = 61, 64, 2, 4, 2, 16, 24, 8, 2
HS = C // NH
THETA, EPS = 10000.0, 1e-5


def hf_names():
    t = [("model.embed_tokens.weight", (VP, C))]
    for l in range(L):
        p = f"model.layers.{l}."
        t += [(p + "input_layernorm.weight", (C,)),
              (p + "self_attn.q_proj.weight", (NH * HS, C)), (p + "self_attn.k_proj.weight", (NKV * HS, C)),
              (p + "self_attn.v_proj.weight", (NKV * HS, C)), (p + "self_attn.o_proj.weight", (C, NH * HS)),
              (p + "post_attention_layernorm.weight", (C,)),
              (p + "mlp.gate_proj.weight", (FF, C)), (p + "mlp.up_proj.weight", (FF, C)),
              (p + "mlp.down_proj.weight", (C, FF))]
    t += [("model.norm.weight", (C,)), ("lm_head.weight", (VP, C))]
    return t


def init_params():
    p = {}
    for name, shape in hf_names():
        if name.endswith("norm.weight"):
            x = 1 + 0.1 * torch.randn(shape)
        else:
            x = 0.3 * torch.randn(shape)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            x[V:] = 0
        p[name] = x.float().requires_grad_(True)
    return p


def rms_norm(x, w):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + EPS))


def rotate_half(x):
    x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_tables():
    inv_freq = 1.0 / (THETA ** (torch.arange(0, HS, 2).float() / HS))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def forward(p, ids, sel):
    cos, sin = rope_tables()
    x = p["model.embed_tokens.weight"][ids]
    for l in sel.get("layers", list(range(L))):
        pre = f"model.layers.{l}."
        a = rms_norm(x, p[pre + "input_layernorm.weight"])
        q = (a @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, NH, HS).transpose(1, 2)
        k = (a @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, NKV, HS).transpose(1, 2)
        v = (a @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, NKV, HS).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(-1)
        y = att @ v  # B, NH, T, HS
        heads = sel.get("heads", {}).get(str(l))
        if heads is not None:
            m = torch.zeros(NH)
            m[heads] = 1
            y = y * m.view(1, NH, 1, 1) * sel["hscale"]
        y = y.transpose(1, 2).reshape(B, T, NH * HS)
        x = x + y @ p[pre + "self_attn.o_proj.weight"].T
        a = rms_norm(x, p[pre + "post_attention_layernorm.weight"])
        g = torch.nn.functional.silu(a @ p[pre + "mlp.gate_proj.weight"].T) * (a @ p[pre + "mlp.up_proj.weight"].T)
        neurons = sel.get("neurons", {}).get(str(l))
        if neurons is not None:
            m = torch.zeros(FF)
            m[neurons] = 1
            g = g * m * sel["mscale"]
        x = x + g @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"])
    return (x @ p["lm_head.weight"].T)[..., :V]


def f32(v):
    return float(f"{float(v):.9g}")  # 9 significant digits: exact for float32


def flat(tensors):
    """Values in estkit's table order, q/k/v and gate/up fused by rows."""
    out = []

    def put(t):
        out.extend(f32(v) for v in t.detach().reshape(-1))

    put(tensors["model.embed_tokens.weight"])
    for l in range(L):
        pre = f"model.layers.{l}."
        put(tensors[pre + "input_layernorm.weight"])
        put(torch.cat([tensors[pre + "self_attn." + n + "_proj.weight"] for n in "qkv"]))
        put(tensors[pre + "self_attn.o_proj.weight"])
        put(tensors[pre + "post_attention_layernorm.weight"])
        put(torch.cat([tensors[pre + "mlp.gate_proj.weight"], tensors[pre + "mlp.up_proj.weight"]]))
        put(tensors[pre + "mlp.down_proj.weight"])
    put(tensors["model.norm.weight"])
    put(tensors["lm_head.weight"])
    return out


def run(sel, name, outdir):
    p = init_params()
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    start = flat(p)
    logits = forward(p, ids, sel)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    loss.backward()
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)) for n, t in p.items()}
    fixture = {
        "config": {"arch": "llama", "vocab": V, "padded": VP, "layers": L, "heads": NH, "kv_heads": NKV, "channels": C,
                   "ff": FF, "max_t": T, "rope_theta": THETA, "norm_eps": EPS, "b": B, "t": T},
        "selection": sel, "ids": ids.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "params": start, "logits": [f32(v) for v in logits.detach().reshape(-1)], "loss": f32(loss),
        "grads": flat(grads),
    }
    decay = [t for n, t in p.items() if t.dim() == 2]
    nodecay = [t for n, t in p.items() if t.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    opt.step()  # the gradients above
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(p, ids, sel).reshape(-1, V), targets.reshape(-1))
        loss.backward()
        opt.step()
    fixture["adamw"] = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "steps": 3}
    fixture["params_after"] = flat(p)
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(fixture, f)


outdir = sys.argv[1]
os.makedirs(outdir, exist_ok=True)
run({}, "llama-full", outdir)
# whole key/value groups with their query heads (2 query heads per group)
run({"heads": {"0": [2, 3], "1": [0, 1]}, "hscale": 2.0,
     "neurons": {"0": list(range(0, FF, 2)), "1": list(range(1, FF, 2))}, "mscale": 2.0}, "llama-est-groups", outdir)
# query heads within every group
run({"heads": {"0": [0, 3], "1": [1, 2]}, "hscale": 2.0,
     "neurons": {"0": list(range(3, 15)), "1": list(range(12, 24))}, "mscale": 2.0}, "llama-est-within", outdir)
run({"layers": [1], "heads": {"1": [0, 1]}, "hscale": 2.0, "neurons": {"1": list(range(12, 24))}, "mscale": 2.0},
    "llama-est-layers", outdir)

# The 1/p scale of what was kept: a sampled step scales the heads' and
# neurons' outputs by n/|I|, the inverse of the fraction actually kept (the
# paper's formula, which keeps the output's expectation), not by the
# nominal 1/p. Rates pH = 0.5 and pM = 0.3 (7 of 24 neurons: 24/7), with
# one, two and three key/value heads under both head modes; one key/value
# head in "groups" mode keeps its only group: every head runs, scale 1.


def configure(nh, nkv, c):
    global NH, NKV, C, HS
    NH, NKV, C = nh, nkv, c
    HS = C // NH


NEURONS = [1, 4, 9, 13, 17, 20, 22]  # 7 of 24
for nh, nkv, c, mode, heads in [
    (4, 1, 16, "groups", None),  # the only group is kept: nothing dropped
    (4, 1, 16, "within", [1, 3]),
    (4, 2, 16, "groups", [2, 3]),
    (4, 2, 16, "within", [0, 3]),
    (6, 3, 24, "groups", [0, 1, 4, 5]),  # 2 of 3 groups: scale 3/2
    (6, 3, 24, "within", [1, 2, 5]),
]:
    configure(nh, nkv, c)
    sel = {"neurons": {str(l): NEURONS for l in range(L)}, "mscale": FF / len(NEURONS)}
    if heads is not None:
        sel["heads"] = {str(l): heads for l in range(L)}
        sel["hscale"] = NH / len(heads)
    run(sel, f"llama-scale-kv{nkv}-{mode}", outdir)


# Steps whose selections change (as gpt2_ref.py's run_steps): a block
# skipped at one step runs at the next, with query heads sampled within
# every key/value group, so that under the "sampled" update a key/value
# row steps whenever one of its query heads does, and a query row only
# when its own head does. "dense" is torch.optim.AdamW; "sampled" is AdamW
# written out per element, each element counting its own steps.

def unit_mask(name, sel):
    """Which elements of a running block's tensor belong to its sampled
    heads or neurons (None: all of them)."""
    parts = name.split(".")
    l, kind = parts[2], ".".join(parts[3:])
    heads = sel.get("heads", {}).get(l)
    neurons = sel.get("neurons", {}).get(l)
    if heads is not None and kind in ("self_attn.q_proj.weight", "self_attn.o_proj.weight"):
        m = torch.zeros(NH * HS, dtype=torch.bool)
        for h in heads:
            m[h * HS:(h + 1) * HS] = True
        return m.view(-1, 1) if kind.startswith("self_attn.q") else m.view(1, -1)
    if heads is not None and kind in ("self_attn.k_proj.weight", "self_attn.v_proj.weight"):
        m = torch.zeros(NKV * HS, dtype=torch.bool)
        for h in heads:
            g = h // (NH // NKV)
            m[g * HS:(g + 1) * HS] = True
        return m.view(-1, 1)
    if neurons is not None and kind in ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"):
        m = torch.zeros(FF, dtype=torch.bool)
        m[neurons] = True
        return m.view(1, -1) if kind.startswith("mlp.down") else m.view(-1, 1)
    return None


def sampled_adamw(p, state, sel, lr, b1, b2, eps, wd):
    """AdamW written out per element, each element counting its own steps."""
    with torch.no_grad():
        for name, t in p.items():
            if t.grad is None:
                continue  # a skipped block
            mask = unit_mask(name, sel) if name.startswith("model.layers.") else None
            mask = torch.ones_like(t, dtype=torch.bool) if mask is None else mask.expand_as(t)
            s = state.setdefault(name, {"m": torch.zeros_like(t), "v": torch.zeros_like(t),
                                        "n": torch.zeros(t.shape, dtype=torch.float64)})
            g = t.grad
            n = s["n"] + mask.double()
            m = s["m"] + (1 - b1) * (g - s["m"])
            v = s["v"] * b2 + (1 - b2) * g * g
            step_size = (lr / (1 - b1 ** n)).float()
            bc2_sqrt = (1 - b2 ** n).sqrt().float()
            decay = 1 - lr * (wd if t.dim() == 2 else 0.0)
            new = t * decay - step_size * m / (v.sqrt() / bc2_sqrt + eps)
            t.copy_(torch.where(mask, new, t))
            s["m"] = torch.where(mask, m, s["m"])
            s["v"] = torch.where(mask, v, s["v"])
            s["n"] = n


def run_steps(sels, update, name, outdir):
    p = init_params()
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    fixture = {
        "config": {"arch": "llama", "vocab": V, "padded": VP, "layers": L, "heads": NH, "kv_heads": NKV, "channels": C,
                   "ff": FF, "max_t": T, "rope_theta": THETA, "norm_eps": EPS, "b": B, "t": T},
        "update": update, "params": flat(p),
        "adamw": {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps, "weight_decay": wd}, "steps": [],
    }
    decay = [t for n, t in p.items() if t.dim() == 2]
    nodecay = [t for n, t in p.items() if t.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=lr, betas=(b1, b2), eps=eps)
    state = {}
    for sel in sels:
        ids = torch.randint(0, V, (B, T))
        targets = torch.randint(0, V, (B, T))
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(p, ids, sel).reshape(-1, V), targets.reshape(-1))
        loss.backward()
        # elements whose gradient is float noise (not zero, under 1e-5 of
        # their tensor's largest), which AdamW scales up to a step of about
        # lr whatever its value (a zero, as of an embedding row no id
        # reads, is exact on both sides)
        small = {}
        for n, t in p.items():
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            small[n] = ((g.abs() > 0) & (g.abs() <= 1e-5 * g.abs().max())).float()
        noise = [i for i, x in enumerate(flat(small)) if x == 1]
        if update == "dense":
            opt.step()
        else:
            sampled_adamw(p, state, sel, lr, b1, b2, eps, wd)
        fixture["steps"].append({"selection": sel, "ids": ids.reshape(-1).tolist(),
                                 "targets": targets.reshape(-1).tolist(), "loss": f32(loss), "noise": noise,
                                 "params_after": flat(p)})
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(fixture, f)


configure(4, 2, 16)
STEP_SELS = [
    {"layers": [1], "heads": {"1": [0, 2]}, "hscale": 2.0, "neurons": {"1": list(range(0, FF, 2))}, "mscale": 2.0},
    {"layers": [0], "heads": {"0": [1, 3]}, "hscale": 2.0, "neurons": {"0": list(range(4, 20))}, "mscale": FF / 16},
    {"heads": {"0": [0, 3], "1": [1, 2]}, "hscale": 2.0,
     "neurons": {"0": list(range(1, FF, 2)), "1": list(range(0, 12))}, "mscale": 2.0},
    {"layers": [0], "heads": {"0": [1, 2]}, "hscale": 2.0, "neurons": {"0": list(range(12, FF))}, "mscale": 2.0},
    {},
]
run_steps(STEP_SELS, "dense", "llama-est-steps-dense", outdir)
run_steps(STEP_SELS, "sampled", "llama-est-steps-sampled", outdir)
