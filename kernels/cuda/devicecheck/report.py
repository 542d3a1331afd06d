"""The device check's table: each op's rate from BenchmarkOps next to the
card's copy bandwidth and bf16 matrix rate, both measured here with PyTorch
(the anchors: what the card does for the simplest memory-bound op and for
the matrix product)."""
import re
import statistics
import sys
import time


def timed(fn, n=10):
    import torch

    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def anchors():
    import torch

    x = torch.empty(256 << 20, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / timed(lambda: y.copy_(x)) / 1e9
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    mm = 2 * 8192**3 / timed(lambda: a @ b) / 1e12
    return copy, mm


def steps(path):
    """Per stage of a run's metrics.jsonl: the median step time (the first
    step of each stage left out: it allocates), of it the median wait for
    the loader's batches, tokens/s, and the time and FLOPs of a step over
    the full model's (the last stage)."""
    import json

    by = {}
    for line in open(path):
        r = json.loads(line)
        by.setdefault(r["stage"], []).append(r)
    full = by[max(by)]
    full_ms = statistics.median(r["ms"] for r in full[1:] or full)
    print(f"{'stage':<7}{'rates':<16}{'ms/step':>10}{'data wait':>11}{'tok/s':>10}{'time ratio':>12}{'FLOPs ratio':>13}")
    for stage in sorted(by):
        rs = by[stage]
        ms = statistics.median(r["ms"] for r in rs[1:] or rs)
        wait = statistics.median(r.get("data_wait_ms", float("nan")) for r in rs[1:] or rs)
        r = rs[-1]
        rates = ":".join(f"{r['rates'][k]:g}" for k in ("ph", "pm", "pl"))
        tokens = r["tokens"] / (r["step"] + 1)
        fr = r["flops"]["all"] / r["full_flops"]["all"]
        print(f"{stage:<7}{rates:<16}{ms:>10.1f}{wait:>9.1f}ms{tokens / ms * 1000:>10.0f}{ms / full_ms:>12.3f}{fr:>13.3f}")


def shard(path):
    """estkit shard's scaling: per GOMAXPROCS (the -N of a benchmark's
    name), the median MB/s of ShardBuild and of ShardBound, and their
    ratio (issue 4's goal: at least 85%)."""
    line = re.compile(r"^BenchmarkShard(Build|Bound)(?:-(\d+))?\s+\d+\s+\d+ ns/op\s+([\d.]+) MB/s")
    mbs = {}
    for text in open(path):
        m = line.match(text.strip())
        if m:
            mbs.setdefault((m.group(1), int(m.group(2) or 1)), []).append(float(m.group(3)))
    cores = sorted({n for _, n in mbs})
    if not cores:
        print("no shard benchmark results", file=sys.stderr)
        sys.exit(1)
    print(f"{'cores':>6}{'build MB/s':>12}{'bound MB/s':>12}{'ratio':>8}")
    for n in cores:
        b = statistics.median(mbs.get(("Build", n), [0]))
        u = statistics.median(mbs.get(("Bound", n), [0]))
        print(f"{n:>6}{b:>12.1f}{u:>12.1f}{100 * b / u if u else 0:>7.0f}%")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--steps":
        steps(sys.argv[2])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--shard":
        shard(sys.argv[2])
        return
    import torch

    if torch.cuda.is_available():
        copy, mm = anchors()
        print(f"{torch.cuda.get_device_name()}: copy {copy:.0f} GB/s, bf16 matmul {mm:.0f} TFLOP/s (PyTorch {torch.__version__})")
    else:
        copy = mm = None
        print("PyTorch sees no GPU: no anchors")
    print(f"{'op':<36}{'time':>12}{'rate':>16}{'of anchor':>11}")
    line = re.compile(r"^BenchmarkOps/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$")
    times = {}
    for text in open(sys.argv[1]):
        m = line.match(text.strip())
        if not m:
            continue
        name, ns, rest = m.group(1), float(m.group(2)), m.group(3)
        rate = re.search(r"([\d.]+) (GB/s|TFLOP/s)", rest)
        if not rate:
            continue
        v, unit = float(rate.group(1)), rate.group(2)
        anchor = copy if unit == "GB/s" else mm
        share = f"{100 * v / anchor:>9.1f}%" if anchor else f"{'-':>10}"
        print(f"{name:<36}{ns / 1e6:>10.3f}ms{v:>10.1f} {unit:<7}{share}")
        times[name] = ns
    if not times:
        print("no benchmark results", file=sys.stderr)
        sys.exit(1)
    # what bf16 storage saves: each op's time with bf16 activations over
    # its time with fp32 ones (the same precision otherwise)
    pairs = []
    for name, ns in times.items():
        if not name.endswith("-stored"):
            continue
        base = name[: -len("/bf16-stored")] if name.endswith("/bf16-stored") else name.replace("-bf16-stored", "")
        if base.endswith("/fp32"):
            base = base[: -len("/fp32")]
        for b in (base, base + "/bf16"):  # the products: against fp32 inputs rounded to bf16
            if b in times:
                pairs.append((name, times[b], ns))
                break
    if pairs:
        print(f"{'bf16 storage':<36}{'fp32 act.':>12}{'bf16 act.':>12}{'time ratio':>12}")
        for name, a, b in pairs:
            print(f"{name:<36}{a / 1e6:>10.3f}ms{b / 1e6:>10.3f}ms{b / a:>12.2f}")


main()
