package tokenize

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestBytes: every byte is its own id, special-token text is plain text
// unless allowed, EOS is 256, and decoding returns the bytes, valid UTF-8
// or not.
func TestBytes(t *testing.T) {
	tok, err := Load("bytes")
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 257 || tok.Fingerprint() != "bytes@1" {
		t.Fatalf("vocab %d, fingerprint %s", tok.VocabSize(), tok.Fingerprint())
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200; n++ {
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		if n%2 == 0 {
			b = append(b, "  func main() {\n\t日本語 <|endoftext|> 12345"...)
		}
		ids, err := tok.Encode(string(b), EncodeOptions{EOS: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(b)+1 || ids[len(b)] != 256 {
			t.Fatalf("%d bytes gave %d ids (last %d)", len(b), len(ids), ids[len(ids)-1])
		}
		for i, c := range b {
			if ids[i] != uint32(c) {
				t.Fatalf("byte %d (%#x) encoded as %d", i, c, ids[i])
			}
		}
		back, err := tok.Decode(ids[:len(b)])
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("decode: %q, want %q (%v)", back, b, err)
		}
	}
	ids, _ := tok.Encode("a<|endoftext|>b", EncodeOptions{AllowedSpecial: true})
	if len(ids) != 3 || ids[1] != 256 {
		t.Fatalf("allowed special: %v", ids)
	}
}
