"""Reference Llama 2 decodes: C++ SentencePiece's decode of seeded random id
sequences (normal, byte, control and unknown pieces mixed). Writes
{"ids": [...], "text": ...} lines; text is what decode returns.

    python3 llama2_decode.py tokenizer.model > llama2-decode.jsonl
"""
import json
import random
import sys

import sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
rng = random.Random(7)
n = sp.get_piece_size()
for k in range(2000):
    ids = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.35:
            ids.append(rng.randint(3, 258))  # byte pieces
        elif kind < 0.45:
            ids.append(rng.randint(0, 2))  # unknown and control
        else:
            ids.append(rng.randint(259, n - 1))
    sys.stdout.write(json.dumps({"ids": ids, "text": sp.decode(ids)}, ensure_ascii=False) + "\n")
