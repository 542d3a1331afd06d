package tokenize

import "sync"

var (
	bytesOnce sync.Once
	bytesTok  *Tokenizer
)

// bytesEndOfText is the byte tokenizer's end-of-document id.
const bytesEndOfText = 256

// Bytes returns the built-in byte tokenizer "bytes": each byte of the text
// is its own id (0-255) and <|endoftext|> is 256. It suits byte-level
// models, whose classifier over 257 ids costs next to nothing, so that
// small models spend their FLOPs in the transformer blocks. It runs on the
// byte-level BPE engine with no merges.
func Bytes() *Tokenizer {
	bytesOnce.Do(func() {
		b := &bpe{ranks: newStrTable(256), bytes: make([][]byte, 256)}
		for c := 0; c < 256; c++ {
			b.ranks.put(string([]byte{byte(c)}), uint64(c))
			b.bytes[c] = []byte{byte(c)}
		}
		bytesTok = &Tokenizer{name: "bytes", version: "1", bpe: b,
			special: map[string]uint32{"<|endoftext|>": bytesEndOfText}, bos: -1, eos: bytesEndOfText, vocab: bytesEndOfText + 1}
	})
	return bytesTok
}
