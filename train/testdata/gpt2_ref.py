"""PyTorch reference for estkit's GPT-2 with Evolving Subnetwork Training.

Written independently of the Go code: the subnetwork is expressed with
masks and 1/p scaling on the full model (head outputs and MLP neurons masked
and scaled before the output projections, whose biases stay unscaled;
skipped blocks are the identity). For a tiny configuration it writes a JSON
fixture per case: the parameters, ids and targets, the selection, and
PyTorch's logits, loss, every parameter's gradient, and the parameters after
3 AdamW steps on the same batch and selection.

    python3 gpt2_ref.py OUTDIR      (Debian: python3-torch)
"""
import json
import math
import os
import sys

import torch

torch.manual_seed(1234)
torch.use_deterministic_algorithms(True)

V, VP, L, NH, C, T, B = 61, 64, 2, 4, 16, 8, 2
HS = C // NH


def table():
    t = [("wte.weight", (VP, C)), ("wpe.weight", (T, C))]
    for l in range(L):
        h = f"h.{l}."
        t += [(h + "ln_1.weight", (C,)), (h + "ln_1.bias", (C,)),
              (h + "attn.c_attn.weight", (3 * C, C)), (h + "attn.c_attn.bias", (3 * C,)),
              (h + "attn.c_proj.weight", (C, C)), (h + "attn.c_proj.bias", (C,)),
              (h + "ln_2.weight", (C,)), (h + "ln_2.bias", (C,)),
              (h + "mlp.c_fc.weight", (4 * C, C)), (h + "mlp.c_fc.bias", (4 * C,)),
              (h + "mlp.c_proj.weight", (C, 4 * C)), (h + "mlp.c_proj.bias", (C,))]
    t += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return t


def init_params():
    p = {}
    for name, shape in table():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            x = 1 + 0.1 * torch.randn(shape)
        else:
            x = 0.1 * torch.randn(shape)  # biases too: a test should see them
        if name == "wte.weight":
            x[V:] = 0
        p[name] = x.float().requires_grad_(True)
    return p


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(p, ids, sel):
    x = p["wte.weight"][ids] + p["wpe.weight"][torch.arange(T)]
    layers = sel.get("layers", list(range(L)))
    for l in layers:
        h = f"h.{l}."
        a = torch.nn.functional.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], 1e-5)
        qkv = a @ p[h + "attn.c_attn.weight"].T + p[h + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(B, T, NH, HS).transpose(1, 2)
        k = k.view(B, T, NH, HS).transpose(1, 2)
        v = v.view(B, T, NH, HS).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(-1)
        y = att @ v  # B, NH, T, HS
        heads = sel.get("heads", {}).get(str(l))
        if heads is not None:
            m = torch.zeros(NH)
            m[heads] = 1
            y = y * m.view(1, NH, 1, 1) * sel["hscale"]
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"].T + p[h + "attn.c_proj.bias"]
        a = torch.nn.functional.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], 1e-5)
        g = gelu(a @ p[h + "mlp.c_fc.weight"].T + p[h + "mlp.c_fc.bias"])
        neurons = sel.get("neurons", {}).get(str(l))
        if neurons is not None:
            m = torch.zeros(4 * C)
            m[neurons] = 1
            g = g * m * sel["mscale"]
        x = x + g @ p[h + "mlp.c_proj.weight"].T + p[h + "mlp.c_proj.bias"]
    x = torch.nn.functional.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    return (x @ p["wte.weight"].T)[..., :V]


def f32(v):
    return float(f"{float(v):.9g}")  # 9 significant digits: exact for float32


def flat(tensors):
    return [f32(v) for name, _ in table() for v in tensors[name].detach().reshape(-1)]


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
        "config": {"vocab": V, "padded": VP, "layers": L, "heads": NH, "channels": C, "max_t": T, "b": B, "t": T},
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
run({}, "gpt2-full", outdir)
run({"heads": {"0": [1, 3], "1": [2, 0]}, "hscale": 2.0,
     "neurons": {"0": list(range(0, 64, 2)), "1": list(range(5, 64, 2))}, "mscale": 2.0}, "gpt2-est-width", outdir)
run({"layers": [1], "heads": {"1": [3, 0]}, "hscale": 2.0, "neurons": {"1": list(range(32, 64))}, "mscale": 2.0},
    "gpt2-est-layers", outdir)
