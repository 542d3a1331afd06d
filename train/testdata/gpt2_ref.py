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


# Steps whose selections change: a block skipped at one step runs at the
# next, heads and neurons differ from step to step. "dense" is
# torch.optim.AdamW on the masked model (a skipped block's parameters have
# no gradient, so PyTorch neither steps nor decays them and their step
# counts stay behind); "sampled" updates only the rows and columns of the
# sampled heads and neurons (and whole the other tensors of a running
# block), each element with its own step count for the bias corrections.

def unit_mask(name, sel):
    """Which elements of a running block's tensor belong to its sampled
    heads or neurons (None: all of them)."""
    parts = name.split(".")
    l = parts[1]
    heads = sel.get("heads", {}).get(l)
    neurons = sel.get("neurons", {}).get(l)
    kind = ".".join(parts[2:])
    if heads is not None and kind in ("attn.c_attn.weight", "attn.c_attn.bias"):
        m = torch.zeros(3 * C, dtype=torch.bool)
        for part in range(3):
            for h in heads:
                m[part * C + h * HS: part * C + (h + 1) * HS] = True
        return m.view(-1, 1) if kind.endswith("weight") else m
    if heads is not None and kind == "attn.c_proj.weight":
        m = torch.zeros(C, dtype=torch.bool)
        for h in heads:
            m[h * HS:(h + 1) * HS] = True
        return m.view(1, -1)
    if neurons is not None and kind in ("mlp.c_fc.weight", "mlp.c_fc.bias"):
        m = torch.zeros(4 * C, dtype=torch.bool)
        m[neurons] = True
        return m.view(-1, 1) if kind.endswith("weight") else m
    if neurons is not None and kind == "mlp.c_proj.weight":
        m = torch.zeros(4 * C, dtype=torch.bool)
        m[neurons] = True
        return m.view(1, -1)
    return None


def sampled_adamw(p, state, sel, lr, b1, b2, eps, wd):
    """AdamW written out per element, each element counting its own steps."""
    with torch.no_grad():
        for name, t in p.items():
            if t.grad is None:
                continue  # a skipped block
            mask = unit_mask(name, sel) if name.startswith("h.") else None
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
        "config": {"vocab": V, "padded": VP, "layers": L, "heads": NH, "channels": C, "max_t": T, "b": B, "t": T},
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
        # elements whose gradient is float noise (under 1e-5 of their
        # tensor's largest, in the rows and columns that ran: the others'
        # gradients are exactly zero): AdamW scales such a gradient up to a
        # step of about lr whatever its value, so no two float32
        # computations agree there (GPT-2's key bias has no true gradient)
        noise, off = [], 0
        for n, shape in table():
            g = p[n].grad
            if g is not None:
                ran = unit_mask(n, sel) if n.startswith("h.") else None
                ran = torch.ones_like(g, dtype=torch.bool) if ran is None else ran.expand_as(g)
                a = g.abs()
                small = ran & (a <= 1e-5 * a.max())
                noise += (small.reshape(-1).nonzero().reshape(-1) + off).tolist()
            off += math.prod(shape)
        if update == "dense":
            opt.step()
        else:
            sampled_adamw(p, state, sel, lr, b1, b2, eps, wd)
        fixture["steps"].append({"selection": sel, "ids": ids.reshape(-1).tolist(),
                                 "targets": targets.reshape(-1).tolist(), "loss": f32(loss), "noise": noise,
                                 "params_after": flat(p)})
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(fixture, f)


STEP_SELS = [
    # block 0 skipped; block 1 at half width
    {"layers": [1], "heads": {"1": [0, 2]}, "hscale": 2.0, "neurons": {"1": list(range(0, 64, 2))}, "mscale": 2.0},
    # block 0 runs for the first time at step 2, block 1 skipped
    {"layers": [0], "heads": {"0": [1, 2, 3]}, "hscale": 4 / 3, "neurons": {"0": list(range(10, 58))}, "mscale": 64 / 48},
    # both blocks, other heads and neurons
    {"heads": {"0": [0, 1], "1": [2, 3]}, "hscale": 2.0,
     "neurons": {"0": list(range(1, 64, 2)), "1": list(range(0, 32))}, "mscale": 2.0},
    {"layers": [0], "heads": {"0": [0, 3]}, "hscale": 2.0, "neurons": {"0": list(range(32, 64))}, "mscale": 2.0},
    {},  # the full model
]
run_steps(STEP_SELS, "dense", "gpt2-est-steps-dense", outdir)
run_steps(STEP_SELS, "sampled", "gpt2-est-steps-sampled", outdir)
