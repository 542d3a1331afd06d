package tokenize

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func loadHF(t *testing.T, name string) *Tokenizer {
	t.Helper()
	tok, err := LoadHF(filepath.Join(refDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestHFGPT2MatchesTiktoken: GPT-2's tokenizer.json encodes text as
// tiktoken does, on every document, and round-trips.
func TestHFGPT2MatchesTiktoken(t *testing.T) {
	compareWithReference(t, loadHF(t, "gpt2-tokenizer.json"), "gpt2.jsonl", "tiktoken", compareOpts{roundTrip: true})
}

// tokenizersJSSpaces: the tokenizers of transformers.js split GPT-2 text
// with JavaScript's \s, which counts U+FEFF as space and U+0085 not, unlike
// Hugging Face's Rust library (Oniguruma's \s) and tiktoken; documents with
// either are compared with tiktoken above instead.
func tokenizersJSSpaces(text string) string {
	if strings.ContainsAny(text, "\u0085\ufeff") {
		return "U+0085 or U+FEFF, which tokenizers.js's JavaScript \\s treats unlike Hugging Face's Rust library and tiktoken"
	}
	return ""
}

// TestHFGPT2MatchesTokenizersJS: with special tokens recognised, as Hugging
// Face recognises them.
func TestHFGPT2MatchesTokenizersJS(t *testing.T) {
	compareWithReference(t, loadHF(t, "gpt2-tokenizer.json"), "hf-gpt2.jsonl", "tokenizers.js",
		compareOpts{special: true, skip: tokenizersJSSpaces})
}

// TestHFLlama2MatchesSentencePiece: Llama 2's tokenizer.json (converted from
// tokenizer.model) encodes text as C++ SentencePiece does.
func TestHFLlama2MatchesSentencePiece(t *testing.T) {
	compareWithReference(t, loadHF(t, "llama2-tokenizer.json"), "llama2.jsonl", "SentencePiece", compareOpts{})
}

// TestHFLlama2MatchesTokenizersJS: with special tokens recognised, as
// Hugging Face does, on every document.
func TestHFLlama2MatchesTokenizersJS(t *testing.T) {
	compareWithReference(t, loadHF(t, "llama2-tokenizer.json"), "hf-llama2.jsonl", "tokenizers.js", compareOpts{special: true})
}

// TestHFLikeBuiltins: the tokenizer.json files give the same vocabulary
// size, BOS, EOS and decoding as the built-in GPT-2 and tokenizer.model, and
// a fingerprint of their own.
func TestHFLikeBuiltins(t *testing.T) {
	g, h := gpt2(t), loadHF(t, "gpt2-tokenizer.json")
	if g.VocabSize() != h.VocabSize() || g.bos != h.bos || g.eos != h.eos || g.Fingerprint() == h.Fingerprint() {
		t.Fatalf("gpt2 %d %d %d %s, tokenizer.json %d %d %d %s", g.VocabSize(), g.bos, g.eos, g.Fingerprint(), h.VocabSize(), h.bos, h.eos, h.Fingerprint())
	}
	ids := []uint32{50256, 0, 31373, 50255, 220}
	a, _ := g.Decode(ids)
	b, err := h.Decode(ids)
	if err != nil || string(a) != string(b) {
		t.Fatalf("decode: %q vs %q (%v)", a, b, err)
	}
	s, l := llama2(t), loadHF(t, "llama2-tokenizer.json")
	if s.VocabSize() != l.VocabSize() || s.bos != l.bos || s.eos != l.eos {
		t.Fatalf("tokenizer.model %d %d %d, tokenizer.json %d %d %d", s.VocabSize(), s.bos, s.eos, l.VocabSize(), l.bos, l.eos)
	}
	for _, c := range readJSONL(t, filepath.Join(refDir(t), "llama2-decode.jsonl")) {
		got, err := l.Decode(c.IDs)
		if err != nil || string(got) != c.Text {
			t.Fatalf("decode %v: %q, SentencePiece %q (%v)", c.IDs, got, c.Text, err)
		}
	}
	for _, o := range []EncodeOptions{{BOS: true, EOS: true}, {AllowedSpecial: true}} {
		x, _ := s.Encode("<s>Hi there</s>", o)
		y, _ := l.Encode("<s>Hi there</s>", o)
		if !slices.Equal(x, y) {
			t.Fatalf("%+v: tokenizer.model %v, tokenizer.json %v", o, x, y)
		}
	}
}

// tinyByteLevel is a byte-level BPE tokenizer.json of our own: the 256
// bytes in GPT-2's character table, three merges and <|endoftext|>.
func tinyByteLevel() map[string]any {
	toChar, _ := byteLevelChars()
	vocab := map[string]any{}
	for b := range 256 {
		vocab[string(toChar[b])] = b
	}
	sp := string(toChar[' '])
	vocab[sp+"t"] = 256
	vocab["he"] = 257
	vocab[sp+"the"] = 258
	vocab["<|endoftext|>"] = 259
	return map[string]any{
		"version":      "1.0",
		"added_tokens": []any{map[string]any{"id": 259, "content": "<|endoftext|>", "special": true, "normalized": true}},
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{
			"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"decoder": map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "vocab": vocab,
			"merges": []any{sp + " t", "h e", sp + "t he"}},
	}
}

// tinyLlama is a SentencePiece-style tokenizer.json of our own in the Llama
// converter's layout.
func tinyLlama() map[string]any {
	pieces := []string{"<unk>", "<s>", "</s>"}
	for b := range 256 {
		pieces = append(pieces, "<0x"+strings.ToUpper(hex2(byte(b)))+">")
	}
	pieces = append(pieces, spaceMark, "a", "b", "ab", spaceMark+"a", spaceMark+"ab")
	vocab := map[string]any{}
	for i, p := range pieces {
		vocab[p] = i
	}
	// Every split of a piece into two pieces, grouped by piece, by score.
	merges := []any{[]string{"a", "b"}, []string{spaceMark, "a"}, []string{spaceMark, "ab"}, []string{spaceMark + "a", "b"}}
	added := []any{}
	for i, p := range pieces[:3] {
		added = append(added, map[string]any{"id": i, "content": p, "special": true})
	}
	return map[string]any{
		"added_tokens": added,
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": spaceMark},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": spaceMark}}},
		"pre_tokenizer": nil,
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace"}, map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"}, map[string]any{"type": "Strip"}}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": vocab, "merges": merges},
	}
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func writeJSON(t *testing.T, dir string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHFTiny loads the two small tokenizers (no references needed) and
// checks their ids by hand.
func TestHFTiny(t *testing.T) {
	dir := t.TempDir()
	bl, err := Load(writeJSON(t, dir, tinyByteLevel()))
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := bl.Encode("the the<|endoftext|>", EncodeOptions{AllowedSpecial: true, EOS: true})
	// "the" (no space before it: t, he), " the", then the special twice.
	if want := []uint32{'t', 257, 258, 259, 259}; !slices.Equal(ids, want) {
		t.Fatalf("byte-level: %v, want %v", ids, want)
	}
	if back, _ := bl.Decode(ids); string(back) != "the the<|endoftext|><|endoftext|>" {
		t.Fatalf("byte-level decode: %q", back)
	}
	if bl.bos != -1 || bl.eos != 259 || bl.VocabSize() != 260 {
		t.Fatalf("bos %d eos %d vocab %d", bl.bos, bl.eos, bl.VocabSize())
	}
	dir2 := t.TempDir()
	ll, err := Load(filepath.Dir(writeJSON(t, dir2, tinyLlama()))) // a directory works too
	if err != nil {
		t.Fatal(err)
	}
	ids, _ = ll.Encode("ab ba<s>", EncodeOptions{BOS: true, AllowedSpecial: true})
	// <s>, ▁ab, ▁, b, a, then the special <s> (its segment before: none).
	if want := []uint32{1, 264, 259, 261, 260, 1}; !slices.Equal(ids, want) {
		t.Fatalf("sentencepiece-style: %v, want %v", ids, want)
	}
	ids, _ = ll.Encode("c", EncodeOptions{})
	if want := []uint32{259, 3 + 'c'}; !slices.Equal(ids, want) { // byte fallback
		t.Fatalf("byte fallback: %v, want %v", ids, want)
	}
	// tokenizer_config.json beside the file names BOS and EOS.
	os.WriteFile(filepath.Join(dir2, "tokenizer_config.json"), []byte(`{"bos_token": {"content": "</s>"}, "eos_token": "<s>"}`), 0o644)
	ll2, err := Load(filepath.Join(dir2, "tokenizer.json"))
	if err != nil || ll2.bos != 2 || ll2.eos != 1 || ll2.Fingerprint() == ll.Fingerprint() {
		t.Fatalf("with tokenizer_config.json: bos %d eos %d, %v", ll2.bos, ll2.eos, err)
	}
}

// TestHFUnsupported: a tokenizer.json with a component estkit does not
// implement fails with a message naming it.
func TestHFUnsupported(t *testing.T) {
	cases := []struct {
		base  func() map[string]any
		edit  func(m map[string]any)
		wants string
	}{
		{tinyByteLevel, func(m map[string]any) { m["model"].(map[string]any)["type"] = "WordPiece" }, `model "WordPiece"`},
		{tinyByteLevel, func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }, `pre_tokenizer "Whitespace"`},
		{tinyByteLevel, func(m map[string]any) { m["normalizer"] = map[string]any{"type": "NFKC"} }, `normalizer "NFKC"`},
		{tinyByteLevel, func(m map[string]any) { m["pre_tokenizer"].(map[string]any)["add_prefix_space"] = true }, "add_prefix_space"},
		{tinyByteLevel, func(m map[string]any) {
			mg := m["model"].(map[string]any)["merges"].([]any)
			mg[0], mg[1] = mg[1], mg[0]
		}, "not in vocabulary order"},
		{tinyByteLevel, func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{"x y"} }, "not in the vocabulary"},
		{tinyByteLevel, func(m map[string]any) { m["model"].(map[string]any)["dropout"] = 0.1 }, "dropout"},
		{tinyByteLevel, func(m map[string]any) { m["decoder"] = map[string]any{"type": "WordPiece"} }, `decoder "WordPiece"`},
		{tinyByteLevel, func(m map[string]any) {
			m["added_tokens"] = []any{map[string]any{"id": 259, "content": "<|endoftext|>", "special": false}}
		}, "not special"},
		{tinyLlama, func(m map[string]any) { m["model"].(map[string]any)["byte_fallback"] = false }, "byte_fallback"},
		{tinyLlama, func(m map[string]any) { m["normalizer"] = map[string]any{"type": "Lowercase"} }, `normalizer "Lowercase"`},
		{tinyLlama, func(m map[string]any) {
			m["model"].(map[string]any)["merges"] = []any{[]string{spaceMark, "ab"}, []string{"a", "b"}, []string{spaceMark, "a"}, []string{spaceMark + "a", "b"}}
		}, "not consecutive"},
		{tinyLlama, func(m map[string]any) {
			m["model"].(map[string]any)["merges"] = []any{[]string{"a", "b"}, []string{spaceMark, "ab"}, []string{spaceMark + "a", "b"}}
		}, "no merge makes it"},
		{tinyLlama, func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": spaceMark, "prepend_scheme": "first", "split": false}
			m["normalizer"] = nil
		}, "Metaspace"},
	}
	for i, c := range cases {
		m := c.base()
		c.edit(m)
		_, err := Load(writeJSON(t, t.TempDir(), m))
		if err == nil || !errors.Is(err, ErrHF) || !strings.Contains(err.Error(), c.wants) {
			t.Errorf("case %d: got %v, want an error naming %s", i, err, c.wants)
		}
	}
	// Metaspace that always prepends and does not split is Llama's chain.
	m := tinyLlama()
	m["normalizer"] = nil
	m["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": spaceMark, "prepend_scheme": "always", "split": false}
	if _, err := Load(writeJSON(t, t.TempDir(), m)); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseHF: any bytes load or fail with an error, never panic.
func FuzzParseHF(f *testing.F) {
	for _, m := range []map[string]any{tinyByteLevel(), tinyLlama()} {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":5},"merges":["a a"]},"pre_tokenizer":{"type":"ByteLevel"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := parseHF(b, nil)
		if err != nil {
			return
		}
		e := tok.NewEncoder()
		for _, s := range []string{"a b", "<s>x", "héllo\x00", ""} {
			ids, err := e.Encode(s, EncodeOptions{AllowedSpecial: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tok.Decode(ids); err != nil {
				t.Fatalf("decode of encoded ids: %v", err)
			}
		}
	})
}
