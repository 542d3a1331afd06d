"""The anchor of BenchmarkLlama2Encode: C++ SentencePiece (Debian's
python3-sentencepiece) encoding the same files with Meta's Llama 2 model, one
thread. Prints go-test benchmark lines for make bench's table:

    python3 bench_spm.py DIR tokenizer.model   (DIR holds english.jsonl, code.jsonl)
"""
import json
import sys
import time

import sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file=sys.argv[2])
for name in ("english", "code"):
    with open(f"{sys.argv[1]}/{name}.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    size = sum(len(t.encode("utf-8")) for t in texts)
    t0 = time.perf_counter_ns()
    tokens = 0
    for t in texts:
        tokens += len(sp.encode(t))
    ns = time.perf_counter_ns() - t0
    s = ns / 1e9
    print(f"BenchmarkLlama2Anchor/{name}-1\t1\t{ns} ns/op\t{size / 1e6 / s:.2f} MB/s\t{tokens / s:.0f} tok/s")
