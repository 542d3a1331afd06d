package tokenize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
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
//   - a SentencePiece tokenizer.model: its bytes as they are, a
//     tokenizer_config.json for LlamaTokenizer, and a tokenizer.json laid
//     out as Hugging Face's Llama converter lays it out (spTokenizerJSON),
//     which LlamaTokenizerFast and transformers.js load.
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
			if files["tokenizer.json"], err = spTokenizerJSON(t); err != nil {
				return nil, err
			}
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

// spTokenizerJSON is a SentencePiece BPE model's tokenizer.json as Hugging
// Face's Llama converter (transformers' convert_slow_tokenizer.py, the
// "legacy" layout of Llama 2's and TinyLlama's folders) lays it out:
//
//   - the pieces as a BPE vocabulary (byte pieces <0xXX> included, for
//     byte_fallback), <unk> as the unknown token, fuse_unk;
//   - as merges, every split of a piece (at a character boundary) into two
//     pieces, ordered by the joined piece's score, highest first; ties keep
//     vocabulary order, and a piece's splits are ordered by the ids of
//     their halves. The unknown and control pieces score 0, as the
//     converter scores them;
//   - the unknown, BOS and EOS pieces as special added tokens;
//   - a normalizer that prepends "▁" (the dummy prefix) and replaces " "
//     with "▁", as the model's normalizer does; no pre-tokenizer;
//   - a post-processor that adds BOS, when the model has one;
//   - the decoders Replace("▁", " "), ByteFallback, Fuse and Strip (one
//     leading space: the dummy prefix).
//
// Hugging Face's BPE applies the merge of lowest rank (highest score)
// first, the leftmost on ties, as SentencePiece merges the pair of highest
// score; the two part ways only where two different pieces have the same
// score (SentencePiece takes the leftmost pair, Hugging Face the piece
// first in the vocabulary), or where a piece holds a character that is not
// itself a piece (SentencePiece merges through it, Hugging Face's BPE
// cannot). Llama 2's model has neither (TestHFFilesSentencePiece checks).
func spTokenizerJSON(t *Tokenizer) ([]byte, error) {
	sp := t.sp
	vocab := make(map[string]uint32, len(sp.text))
	for id, p := range sp.text {
		vocab[p] = uint32(id)
	}
	type merge struct {
		l, r  string
		score float32
	}
	var merges []merge
	for id, p := range sp.text {
		score := sp.scores[id]
		if sp.typ[id] == pieceUnknown || sp.typ[id] == pieceControl {
			score = 0
		}
		var local []merge
		for k := 1; k < len(p); k++ {
			if !utf8.RuneStart(p[k]) {
				continue
			}
			_, lok := vocab[p[:k]]
			_, rok := vocab[p[k:]]
			if lok && rok {
				local = append(local, merge{p[:k], p[k:], score})
			}
		}
		slices.SortFunc(local, func(a, b merge) int {
			if c := int64(vocab[a.l]) - int64(vocab[b.l]); c != 0 {
				return int(c)
			}
			return int(int64(vocab[a.r]) - int64(vocab[b.r]))
		})
		merges = append(merges, local...)
	}
	sort.SliceStable(merges, func(i, j int) bool { return merges[i].score > merges[j].score })
	ms := make([][2]string, len(merges))
	for i, m := range merges {
		ms[i] = [2]string{m.l, m.r}
	}
	specials := []uint32{sp.unkID}
	for _, id := range []int64{t.bos, t.eos} {
		if id >= 0 && !slices.Contains(specials, uint32(id)) {
			specials = append(specials, uint32(id))
		}
	}
	slices.Sort(specials)
	added := make([]map[string]any, 0, len(specials))
	for _, id := range specials {
		added = append(added, map[string]any{"id": id, "content": sp.text[id], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
	}
	str := func(s string) map[string]any { return map[string]any{"String": s} }
	var norm, dec []map[string]any
	if sp.addDummyPrefix {
		norm = append(norm, map[string]any{"type": "Prepend", "prepend": spaceMark})
	}
	if sp.escapeWhitespaces {
		norm = append(norm, map[string]any{"type": "Replace", "pattern": str(" "), "content": spaceMark})
		dec = append(dec, map[string]any{"type": "Replace", "pattern": str(spaceMark), "content": " "})
	}
	dec = append(dec, map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"})
	if sp.addDummyPrefix {
		dec = append(dec, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0})
	}
	var normalizer, post any
	if len(norm) > 0 {
		normalizer = map[string]any{"type": "Sequence", "normalizers": norm}
	}
	if t.bos >= 0 {
		bos := sp.text[t.bos]
		tok := func(typ int) map[string]any {
			return map[string]any{"SpecialToken": map[string]any{"id": bos, "type_id": typ}}
		}
		seq := func(id string, typ int) map[string]any {
			return map[string]any{"Sequence": map[string]any{"id": id, "type_id": typ}}
		}
		post = map[string]any{"type": "TemplateProcessing",
			"single":         []any{tok(0), seq("A", 0)},
			"pair":           []any{tok(0), seq("A", 0), tok(1), seq("B", 1)},
			"special_tokens": map[string]any{bos: map[string]any{"id": bos, "ids": []int64{t.bos}, "tokens": []string{bos}}},
		}
	}
	f := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added,
		"normalizer": normalizer, "pre_tokenizer": nil, "post_processor": post,
		"decoder": map[string]any{"type": "Sequence", "decoders": dec},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": sp.text[sp.unkID],
			"continuing_subword_prefix": nil, "end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true,
			"ignore_merges": false, "vocab": vocab, "merges": ms},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<s>" as it is, as Hugging Face writes it
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	return b.Bytes(), nil
}
