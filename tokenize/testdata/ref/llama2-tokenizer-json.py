"""Builds a Hugging Face tokenizer.json from a Llama 2 SentencePiece
tokenizer.model as the standard Llama converter of Hugging Face transformers
does (the "legacy" Llama layout TinyLlama and Llama 2 ship): the pieces as a
BPE vocabulary; as merges, every split of a piece into two pieces, ordered by
the joined piece's score (highest first; ties in vocabulary order, each
piece's splits by the ids of their halves); <unk>, <s>, </s> as special added
tokens; a normalizer that prepends "▁" and replaces spaces with "▁"; no
pre-tokenizer; byte fallback; a post-processor that adds <s>; and the
decoder chain Replace("▁", " "), ByteFallback, Fuse, Strip(one leading space).

    python3 llama2-tokenizer-json.py tokenizer.model > tokenizer.json
"""
import json
import sys

import sentencepiece as spm

sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
size = sp.get_piece_size()
pieces = [sp.id_to_piece(i) for i in range(size)]
vocab = {p: i for i, p in enumerate(pieces)}
# The converter scores the three reserved pieces 0 and keeps the model's
# scores for the rest.
scores = [0.0 if i < 3 else sp.get_score(i) for i in range(size)]

merges = []
for i, piece in enumerate(pieces):
    local = []
    for k in range(1, len(piece)):
        left, right = piece[:k], piece[k:]
        if left in vocab and right in vocab:
            local.append((vocab[left], vocab[right], left, right, scores[i]))
    local.sort(key=lambda m: (m[0], m[1]))
    merges.extend(local)
merges.sort(key=lambda m: m[4], reverse=True)  # stable: ties keep their order

unk, bos, eos = sp.unk_id(), sp.bos_id(), sp.eos_id()
added = [
    {"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
     "rstrip": False, "normalized": False, "special": True}
    for i in sorted({unk, bos, eos})
]
tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": added,
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    ]},
    "pre_tokenizer": None,
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": pieces[bos], "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": pieces[bos], "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": pieces[bos], "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {pieces[bos]: {"id": pieces[bos], "ids": [bos], "tokens": [pieces[bos]]}},
    },
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ]},
    "model": {
        "type": "BPE", "dropout": None, "unk_token": pieces[unk],
        "continuing_subword_prefix": None, "end_of_word_suffix": None,
        "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
        "vocab": vocab, "merges": [[m[2], m[3]] for m in merges],
    },
}
json.dump(tokenizer, sys.stdout, ensure_ascii=False)
sys.stdout.write("\n")
