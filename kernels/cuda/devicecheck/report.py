"""The device check's table: each op's rate from BenchmarkOps next to the
card's copy bandwidth and bf16 matrix rate, both measured here with PyTorch
(the anchors: what the card does for the simplest memory-bound op and for
the matrix product)."""
import re
import sys
import time

import torch


def timed(fn, n=10):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def anchors():
    x = torch.empty(256 << 20, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / timed(lambda: y.copy_(x)) / 1e9
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    mm = 2 * 8192**3 / timed(lambda: a @ b) / 1e12
    return copy, mm


def main():
    if torch.cuda.is_available():
        copy, mm = anchors()
        print(f"{torch.cuda.get_device_name()}: copy {copy:.0f} GB/s, bf16 matmul {mm:.0f} TFLOP/s (PyTorch {torch.__version__})")
    else:
        copy = mm = None
        print("PyTorch sees no GPU: no anchors")
    print(f"{'op':<28}{'time':>12}{'rate':>16}{'of anchor':>11}")
    line = re.compile(r"^BenchmarkOps/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$")
    rows = 0
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
        print(f"{name:<28}{ns / 1e6:>10.3f}ms{v:>10.1f} {unit:<7}{share}")
        rows += 1
    if rows == 0:
        print("no benchmark results", file=sys.stderr)
        sys.exit(1)


main()
