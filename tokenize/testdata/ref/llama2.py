"""Reference Llama 2 ids: C++ SentencePiece (Debian's python3-sentencepiece)
with Meta's tokenizer.model. Reads JSON lines {"id", "text"} on stdin and
writes {"id", "ids"} lines on stdout, in order.

    python3 llama2.py tokenizer.model < corpus.jsonl > llama2.jsonl
"""
import json
import sys

import sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
out = sys.stdout
for line in sys.stdin:
    if not line.strip():
        continue
    doc = json.loads(line)
    out.write(json.dumps({"id": doc["id"], "ids": sp.encode(doc["text"])}) + "\n")
