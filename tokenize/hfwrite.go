package tokenize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoHF: a tokenizer that has no Hugging Face form (the bytes tokenizer).
var ErrNoHF = errors.New("tokenize: no Hugging Face form")

// HFFiles returns the files of a Hugging Face model folder that hold t, so
// that transformers' AutoTokenizer.from_pretrained loads it beside the
// model. src is the file t was loaded from ("" for a built-in), maxLen the
// model's context (tokenizer_config.json's model_max_length).
//
//   - gpt2 (built in): tokenizer.json, vocab.json and merges.txt made from
//     its ranks (a merge for every token of two bytes or more: the split
//     byte-pair encoding reaches with the ranks below the token's own),
//     and a tokenizer_config.json for GPT2Tokenizer;
//   - a tokenizer.json: its bytes as they are, the tokenizer_config.json
//     beside it (else one made here), and for a byte-level one vocab.json
//     and merges.txt made from its vocabulary; a tokenizer.model beside it
//     is copied too;
//   - a SentencePiece tokenizer.model: its bytes as they are and a
//     tokenizer_config.json for LlamaTokenizer.
//
// The bytes tokenizer has none (ErrNoHF).
func HFFiles(t *Tokenizer, src string, maxLen int) (map[string][]byte, error) {
	files := map[string][]byte{}
	cfg := map[string]any{"model_max_length": maxLen, "clean_up_tokenization_spaces": false}
	text := func(id int64) any {
		if id < 0 {
			return nil
		}
		s, _ := t.specialText(uint32(id))
		return s
	}
	cfg["bos_token"], cfg["eos_token"] = text(t.bos), text(t.eos)
	switch {
	case t.name == "bytes":
		return nil, fmt.Errorf("%w: the bytes tokenizer", ErrNoHF)
	case src == "" && t.name == "gpt2":
		v, m, err := t.bpe.hfVocab(t.special)
		if err != nil {
			return nil, err
		}
		files["tokenizer.json"], err = gpt2TokenizerJSON(v, m, t.special)
		if err != nil {
			return nil, err
		}
		// GPT-2's one special token is its BOS, EOS and unknown token alike
		cfg["tokenizer_class"], cfg["add_prefix_space"], cfg["bos_token"], cfg["unk_token"] = "GPT2Tokenizer", false, text(t.eos), text(t.eos)
	case src == "":
		return nil, fmt.Errorf("tokenize: %s: name the file it was loaded from", t.name)
	case strings.HasSuffix(src, ".json"):
		b, err := readFile(src)
		if err != nil {
			return nil, err
		}
		files["tokenizer.json"] = b
		dir := filepath.Dir(src)
		if c, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json")); err == nil {
			files["tokenizer_config.json"] = c
		} else {
			cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
		}
		if m, err := os.ReadFile(filepath.Join(dir, "tokenizer.model")); err == nil {
			files["tokenizer.model"] = m
		}
	default:
		b, err := readFile(src)
		if err != nil {
			return nil, err
		}
		files["tokenizer.model"] = b
		cfg["tokenizer_class"], cfg["add_bos_token"], cfg["add_eos_token"], cfg["legacy"] = "LlamaTokenizer", t.bos >= 0, false, true
		if t.sp != nil {
			cfg["unk_token"] = t.sp.text[t.sp.unkID]
		}
	}
	if t.bpe != nil {
		v, m, err := t.bpe.hfVocab(t.special)
		if err != nil {
			return nil, err
		}
		if files["vocab.json"], err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("tokenize: %w", err)
		}
		var mt bytes.Buffer
		mt.WriteString("#version: 0.2\n")
		for _, p := range m {
			fmt.Fprintf(&mt, "%s %s\n", p[0], p[1])
		}
		files["merges.txt"] = mt.Bytes()
	}
	if _, ok := files["tokenizer_config.json"]; !ok {
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("tokenize: %w", err)
		}
		files["tokenizer_config.json"] = append(b, '\n')
	}
	return files, nil
}

// hfVocab is a byte-level BPE's vocabulary in Hugging Face's byte-to-
// character form (special tokens included) and its merges in rank order.
// A token's merge is the split of its bytes that byte-pair encoding reaches
// with only the ranks below its own, as the engine encodes: the two agree.
func (b *bpe) hfVocab(special map[string]uint32) (map[string]uint32, [][2]string, error) {
	toChar, _ := byteLevelChars()
	enc := func(p []byte) string {
		var s strings.Builder
		for _, c := range p {
			s.WriteRune(toChar[c])
		}
		return s.String()
	}
	vocab := make(map[string]uint32, len(b.bytes)+len(special))
	var merges [][2]string
	for id, tok := range b.bytes {
		if tok == nil {
			continue
		}
		vocab[enc(tok)] = uint32(id)
		if len(tok) < 2 {
			continue
		}
		l, r, ok := b.splitBelow(tok, uint64(id))
		if !ok {
			return nil, nil, fmt.Errorf("tokenize: token %d %q is made by no merge of lower rank", id, tok)
		}
		merges = append(merges, [2]string{enc(l), enc(r)})
	}
	for s, id := range special {
		vocab[s] = id
	}
	return vocab, merges, nil
}

// splitBelow runs byte-pair encoding on tok with only the ranks below rank
// and returns the two parts it ends with (ok false when it ends with other
// than two).
func (b *bpe) splitBelow(tok []byte, rank uint64) (l, r []byte, ok bool) {
	parts := make([][]byte, len(tok))
	for i := range tok {
		parts[i] = tok[i : i+1]
	}
	for len(parts) > 2 {
		best, bestRank := -1, rank
		for i := 0; i+1 < len(parts); i++ {
			if rk, ok := b.ranks.get(string(parts[i]) + string(parts[i+1])); ok && rk < bestRank {
				best, bestRank = i, rk
			}
		}
		if best < 0 {
			return nil, nil, false
		}
		parts[best] = parts[best][:len(parts[best])+len(parts[best+1])] // adjacent in tok: one slice of it
		parts = append(parts[:best+1], parts[best+2:]...)
	}
	if len(parts) != 2 {
		return nil, nil, false
	}
	if rk, ok := b.ranks.get(string(tok)); !ok || rk != rank {
		return nil, nil, false
	}
	return parts[0], parts[1], true
}

// gpt2TokenizerJSON is GPT-2's tokenizer.json as Hugging Face's gpt2 model
// folder has it: ByteLevel pre-tokenizer, post-processor and decoder, a
// BPE model of the vocabulary and merges, the special tokens added.
func gpt2TokenizerJSON(vocab map[string]uint32, merges [][2]string, special map[string]uint32) ([]byte, error) {
	bl := func(prefix, trim bool) map[string]any {
		return map[string]any{"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": trim, "use_regex": true}
	}
	var added []map[string]any
	for s, id := range special {
		added = append(added, map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": true})
	}
	ms := make([]string, len(merges))
	for i, m := range merges {
		ms[i] = m[0] + " " + m[1]
	}
	f := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil,
		"pre_tokenizer": bl(false, true), "post_processor": bl(true, false), "decoder": bl(true, true),
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": ms},
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	return b, nil
}

// IsHFExportOf tells whether the tokenizer.json at path is the one HFFiles
// writes for t (src as HFFiles takes it), byte for byte: a folder estkit
// exported holds t under another fingerprint (a tokenizer.json's), and a
// run started from that folder names it for t.
func IsHFExportOf(path string, t *Tokenizer, src string) (bool, error) {
	got, err := readFile(path)
	if err != nil {
		return false, err
	}
	files, err := HFFiles(t, src, 0)
	if err != nil {
		return false, err
	}
	want, ok := files["tokenizer.json"]
	return ok && bytes.Equal(got, want), nil
}
