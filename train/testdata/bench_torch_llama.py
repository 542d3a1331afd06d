"""PyTorch CPU anchor of estkit's Llama step benchmark: llama-mini (8
layers, d 512, 8 query heads over 1 key/value head, MLP 1408, vocabulary
32000) in fp32, one training step (forward, backward, clipping, AdamW) at
B=4, T=256, in PyTorch's best configuration on this machine (as
bench_torch.py). Prints a Go benchmark line.

    OMP_WAIT_POLICY=PASSIVE python3 bench_torch_llama.py
"""
import math
import os
import time

import torch

torch.set_num_threads(os.cpu_count())
V, L, NH, NKV, C, FF, B, T = 32000, 8, 8, 1, 512, 1408, 4, 256
HS = C // NH


def rms_norm(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rotate_half(x):
    return torch.cat((-x[..., HS // 2:], x[..., : HS // 2]), dim=-1)


inv_freq = 1.0 / (10000.0 ** (torch.arange(0, HS, 2).float() / HS))
emb = torch.cat([torch.outer(torch.arange(T).float(), inv_freq)] * 2, dim=-1)
COS, SIN = emb.cos(), emb.sin()


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = torch.nn.Parameter(torch.ones(C)), torch.nn.Parameter(torch.ones(C))
        self.q = torch.nn.Linear(C, NH * HS, bias=False)
        self.k = torch.nn.Linear(C, NKV * HS, bias=False)
        self.v = torch.nn.Linear(C, NKV * HS, bias=False)
        self.o = torch.nn.Linear(NH * HS, C, bias=False)
        self.gate = torch.nn.Linear(C, FF, bias=False)
        self.up = torch.nn.Linear(C, FF, bias=False)
        self.down = torch.nn.Linear(FF, C, bias=False)

    def forward(self, x):
        a = rms_norm(x, self.n1)
        q = self.q(a).view(B, T, NH, HS).transpose(1, 2)
        k = self.k(a).view(B, T, NKV, HS).transpose(1, 2)
        v = self.v(a).view(B, T, NKV, HS).transpose(1, 2)
        q, k = q * COS + rotate_half(q) * SIN, k * COS + rotate_half(k) * SIN
        k, v = k.repeat_interleave(NH // NKV, dim=1), v.repeat_interleave(NH // NKV, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(-1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(B, T, NH * HS))
        a = rms_norm(x, self.n2)
        return x + self.down(torch.nn.functional.silu(self.gate(a)) * self.up(a))


class Llama(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, C)
        self.layers = torch.nn.ModuleList(Block() for _ in range(L))
        self.norm = torch.nn.Parameter(torch.ones(C))
        self.head = torch.nn.Linear(C, V, bias=False)

    def forward(self, idx, targets):
        x = self.embed(idx)
        for b in self.layers:
            x = b(x)
        logits = self.head(rms_norm(x, self.norm))
        return torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1))


model = Llama()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
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
print(f"BenchmarkLlamaStepAnchor/mini/B={B},T={T}/est=full-1\t{n}\t{int(secs * 1e9)} ns/op\t{secs * 1000:.0f} ms/step\t{B * T / secs:.2f} tok/s", flush=True)
