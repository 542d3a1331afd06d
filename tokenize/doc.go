// Package tokenize will hold estkit's token-exact tokenizers: GPT-2's
// byte-level BPE and the Llama 2 SentencePiece BPE with byte fallback,
// loaded from Hugging Face tokenizer.json or SentencePiece tokenizer.model
// files, with parallel batch encoding. It knows nothing of Arrow or corpus
// files. It holds no code yet; docs/ARCHITECTURE.md tracks what has landed.
package tokenize
