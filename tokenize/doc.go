// Package tokenize holds estkit's token-exact tokenizers: GPT-2's byte-level
// BPE (50257 tokens, built in), identical to OpenAI tiktoken's "gpt2"
// encode_ordinary, and SentencePiece BPE models with byte fallback read from
// tokenizer.model files (Llama 2's 32000 tokens), identical to C++
// SentencePiece's encode. Hugging Face tokenizer.json files are not read yet
// (docs/ARCHITECTURE.md tracks what has landed).
//
// Contract and invariants:
//
//   - Encode is a pure function of the text and options; Decode(Encode(x))
//     == x for GPT-2 on any input (invalid UTF-8 included: bytes are kept).
//     Special-token text is plain text unless EncodeOptions.AllowedSpecial.
//   - No step is quadratic in the length of a piece: merges use a heap
//     (n log n) beyond a short-piece threshold, where tiktoken's own O(n²)
//     scan is faster; both give the same ids (FuzzMergeDiff).
//   - A Tokenizer is safe for concurrent use; an Encoder (with its piece
//     cache) is not, and EncodeBatch gives each goroutine its own.
//
// The package knows nothing of Arrow or corpus files.
package tokenize
