"""PyTorch CPU anchor of estkit's GPT-2 step benchmark: GPT-2 124M in fp32,
one training step (forward, backward, AdamW) at the shapes of
BenchmarkGPT2Step, in PyTorch's best configuration on this machine
(torch.set_num_threads over every core; run with OMP_WAIT_POLICY=PASSIVE so
that idle OpenMP threads do not spin). Prints Go benchmark lines.

    OMP_WAIT_POLICY=PASSIVE python3 bench_torch.py [T1024=1]
"""
import math
import os
import sys
import time

import torch

torch.set_num_threads(os.cpu_count())
V, L, NH, C, MAXT = 50257, 12, 12, 768, 1024


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
        self.c_attn, self.c_proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.c_fc, self.mlp_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(-1)
        x = x + self.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(torch.nn.functional.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(V, C), torch.nn.Embedding(MAXT, C)
        self.h = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1))


model = GPT2()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
shapes = [(4, 64)] + ([(4, 1024)] if (sys.argv[1:] or ["T1024=1"])[0] != "T1024=0" else [])
for B, T in shapes:
    idx, tg = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))

    def step():
        opt.zero_grad(set_to_none=True)
        model(idx, tg).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up, as the Go benchmark
    n = 3
    t = time.perf_counter()
    for _ in range(n):
        step()
    secs = (time.perf_counter() - t) / n
    print(f"BenchmarkGPT2StepAnchor/124m/B={B},T={T}/est=full-1\t{n}\t{int(secs * 1e9)} ns/op\t{secs * 1000:.0f} ms/step\t{B * T / secs:.2f} tok/s", flush=True)
