package tokenize

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrHF: a tokenizer.json that does not parse or uses a component estkit
// does not implement.
var ErrHF = errors.New("tokenize: bad or unsupported tokenizer.json")

// Load returns the tokenizer name stands for: "gpt2" or "bytes" (built
// in), the path of a Hugging Face tokenizer.json (or a directory holding
// one), or the path of a SentencePiece tokenizer.model.
func Load(name string) (*Tokenizer, error) {
	switch name {
	case "gpt2":
		return GPT2()
	case "bytes":
		return Bytes(), nil
	}
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("tokenize: tokenizer %q: want gpt2, bytes, a tokenizer.json or a SentencePiece tokenizer.model: %w", name, err)
	}
	if st.IsDir() {
		for _, f := range []string{"tokenizer.json", "tokenizer.model"} {
			if _, err := os.Stat(filepath.Join(name, f)); err == nil {
				return Load(filepath.Join(name, f))
			}
		}
		return nil, fmt.Errorf("tokenize: %s: no tokenizer.json or tokenizer.model in the directory", name)
	}
	if strings.HasSuffix(name, ".json") {
		return LoadHF(name)
	}
	return LoadSentencePiece(name)
}

// The parts of tokenizer.json estkit reads. Components are tagged unions
// ("type"); one struct holds the fields of every kind used here.
type hfFile struct {
	AddedTokens   []hfAdded        `json:"added_tokens"`
	Normalizer    *hfPart          `json:"normalizer"`
	PreTokenizer  *hfPart          `json:"pre_tokenizer"`
	PostProcessor *hfPart          `json:"post_processor"`
	Decoder       *hfPart          `json:"decoder"`
	Model         *hfModel         `json:"model"`
	Truncation    *json.RawMessage `json:"truncation"`
	Padding       *json.RawMessage `json:"padding"`
}

type hfAdded struct {
	ID         uint32 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type hfPart struct {
	Type string `json:"type"`
	// Sequence
	Normalizers   []*hfPart `json:"normalizers"`
	PreTokenizers []*hfPart `json:"pretokenizers"`
	Decoders      []*hfPart `json:"decoders"`
	// Prepend, Replace, Strip, Metaspace
	Prepend string `json:"prepend"`
	Pattern *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content       string  `json:"content"`
	Start         int     `json:"start"`
	Stop          int     `json:"stop"`
	Replacement   string  `json:"replacement"`
	PrependScheme *string `json:"prepend_scheme"`
	Split         *bool   `json:"split"`
	// ByteLevel; Metaspace before prepend_scheme
	AddPrefixSpace *bool `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
	// TemplateProcessing
	Single []hfTemplateItem `json:"single"`
}

type hfTemplateItem struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *json.RawMessage `json:"Sequence"`
}

type hfModel struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]uint32 `json:"vocab"`
	Merges                  json.RawMessage   `json:"merges"`
}

// LoadHF reads a Hugging Face tokenizer.json of a BPE model of one of the
// two kinds estkit implements:
//
//   - byte-level BPE as GPT-2's: the ByteLevel pre-tokenizer (GPT-2's split
//     pattern, no prefix space), no normalizer, merges in vocabulary order;
//     encoded by the same engine as the built-in gpt2;
//   - SentencePiece-style BPE as Llama 2's (the layout Hugging Face's Llama
//     converter writes): normalizers Prepend("▁") and Replace(" ", "▁") (or
//     a Metaspace pre-tokenizer that always prepends and does not split),
//     byte fallback, a merge for every split of a piece into two pieces,
//     ranked by piece; encoded by the SentencePiece engine.
//
// Special added tokens are recognised with EncodeOptions.AllowedSpecial (as
// Hugging Face always does); without it their text is ordinary text. BOS and
// EOS come from a tokenizer_config.json beside the file, else from the
// post-processor's template, else from the usual token names. Decoding
// follows the engine: GPT-2's bytes, or SentencePiece's decoding rules.
// Anything else fails with an error naming the unsupported component.
func LoadHF(path string) (*Tokenizer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := readFile(filepath.Join(filepath.Dir(path), "tokenizer_config.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	t, err := parseHF(b, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.New()
	h.Write(b)
	h.Write(cfg)
	t.version += ":" + hex.EncodeToString(h.Sum(nil)[:8])
	return t, nil
}

func parseHF(b, cfg []byte) (*Tokenizer, error) {
	var f hfFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHF, err)
	}
	m := f.Model
	switch {
	case m == nil:
		return nil, fmt.Errorf("%w: no model", ErrHF)
	case m.Type != "BPE" && m.Type != "":
		return nil, fmt.Errorf("%w: model %q is not supported (only BPE)", ErrHF, m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, fmt.Errorf("%w: BPE dropout %g is not supported", ErrHF, *m.Dropout)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return nil, fmt.Errorf("%w: BPE continuing_subword_prefix %q is not supported", ErrHF, *m.ContinuingSubwordPrefix)
	case m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, fmt.Errorf("%w: BPE end_of_word_suffix %q is not supported", ErrHF, *m.EndOfWordSuffix)
	case len(m.Vocab) == 0:
		return nil, fmt.Errorf("%w: empty vocabulary", ErrHF)
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	special := map[string]uint32{}
	for i, a := range f.AddedTokens {
		if !a.Special {
			return nil, fmt.Errorf("%w: added token %d %q is not special; non-special added tokens are not supported", ErrHF, i, a.Content)
		}
		if a.Content == "" || a.SingleWord || a.Lstrip || a.Rstrip {
			return nil, fmt.Errorf("%w: added token %q: empty, single_word, lstrip and rstrip are not supported", ErrHF, a.Content)
		}
		if id, ok := m.Vocab[a.Content]; ok && id != a.ID {
			return nil, fmt.Errorf("%w: added token %q has id %d, the vocabulary %d", ErrHF, a.Content, a.ID, id)
		}
		special[a.Content] = a.ID
	}
	var t *Tokenizer
	switch kind, err := hfKind(&f); {
	case err != nil:
		return nil, err
	case kind == "bytelevel":
		t, err = hfByteLevel(m, merges, special)
		if err != nil {
			return nil, err
		}
	default:
		t, err = hfSentencePiece(m, merges, special)
		if err != nil {
			return nil, err
		}
	}
	t.special = special
	for _, id := range special {
		t.vocab = max(t.vocab, int(id)+1)
	}
	t.bos, t.eos = hfBosEos(&f, cfg, special)
	return t, nil
}

// parseMerges reads merges as ["a b", ...] (older files) or [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("%w: merges are neither [\"a b\"] nor [[\"a\", \"b\"]]: %v", ErrHF, err)
	}
	pairs = make([][2]string, len(lines))
	for i, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok || strings.Contains(b, " ") {
			return nil, fmt.Errorf("%w: merge %d %q is not two tokens separated by one space", ErrHF, i, l)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// hfKind decides which engine the components describe.
func hfKind(f *hfFile) (string, error) {
	pre := f.PreTokenizer
	if pre != nil && pre.Type == "Sequence" && len(pre.PreTokenizers) == 1 {
		pre = pre.PreTokenizers[0]
	}
	switch {
	case pre != nil && pre.Type == "ByteLevel":
		if pre.AddPrefixSpace != nil && *pre.AddPrefixSpace {
			return "", fmt.Errorf("%w: pre_tokenizer ByteLevel with add_prefix_space is not supported", ErrHF)
		}
		if pre.UseRegex != nil && !*pre.UseRegex {
			return "", fmt.Errorf("%w: pre_tokenizer ByteLevel without use_regex is not supported", ErrHF)
		}
		if f.Normalizer != nil {
			return "", fmt.Errorf("%w: normalizer %q with a ByteLevel pre-tokenizer is not supported", ErrHF, f.Normalizer.Type)
		}
		if f.Model.ByteFallback {
			return "", fmt.Errorf("%w: byte_fallback with a ByteLevel pre-tokenizer is not supported", ErrHF)
		}
		if d := f.Decoder; d != nil && d.Type != "ByteLevel" {
			return "", fmt.Errorf("%w: decoder %q with a ByteLevel pre-tokenizer is not supported", ErrHF, d.Type)
		}
		return "bytelevel", nil
	case pre != nil && pre.Type == "Metaspace":
		always := pre.PrependScheme == nil && (pre.AddPrefixSpace == nil || *pre.AddPrefixSpace) ||
			pre.PrependScheme != nil && *pre.PrependScheme == "always"
		if pre.Replacement != spaceMark || !always || pre.Split == nil || *pre.Split {
			return "", fmt.Errorf("%w: pre_tokenizer Metaspace other than replacement \"▁\", prepend_scheme \"always\", split false is not supported", ErrHF)
		}
		if f.Normalizer != nil {
			return "", fmt.Errorf("%w: normalizer %q with a Metaspace pre-tokenizer is not supported", ErrHF, f.Normalizer.Type)
		}
	case pre != nil:
		return "", fmt.Errorf("%w: pre_tokenizer %q is not supported (ByteLevel as GPT-2's, or none as Llama 2's)", ErrHF, pre.Type)
	default:
		if err := llamaNormalizer(f.Normalizer); err != nil {
			return "", err
		}
	}
	if !f.Model.ByteFallback {
		return "", fmt.Errorf("%w: a SentencePiece-style BPE without byte_fallback is not supported", ErrHF)
	}
	if err := llamaDecoder(f.Decoder); err != nil {
		return "", err
	}
	return "sentencepiece", nil
}

// llamaNormalizer accepts Prepend("▁") and Replace(" " → "▁") in either
// order, alone or in a Sequence.
func llamaNormalizer(n *hfPart) error {
	if n == nil {
		return fmt.Errorf("%w: no pre-tokenizer and no normalizer: want ByteLevel (GPT-2) or Prepend + Replace (Llama 2)", ErrHF)
	}
	parts := []*hfPart{n}
	if n.Type == "Sequence" {
		parts = n.Normalizers
	}
	var prepend, replace bool
	for _, p := range parts {
		switch {
		case p == nil:
			return fmt.Errorf("%w: null normalizer in a Sequence", ErrHF)
		case p.Type == "Prepend" && p.Prepend == spaceMark && !prepend:
			prepend = true
		case p.Type == "Replace" && p.Pattern != nil && p.Pattern.String != nil && *p.Pattern.String == " " && p.Content == spaceMark && !replace:
			replace = true
		default:
			return fmt.Errorf("%w: normalizer %q is not supported (only Prepend \"▁\" and Replace \" \" → \"▁\")", ErrHF, p.Type)
		}
	}
	if !prepend || !replace {
		return fmt.Errorf("%w: normalizer: want both Prepend \"▁\" and Replace \" \" → \"▁\"", ErrHF)
	}
	return nil
}

// llamaDecoder accepts Llama's decoder chain (Replace "▁" → " ",
// ByteFallback, Fuse, Strip one leading space) or Metaspace, whose
// decoding the SentencePiece engine does.
func llamaDecoder(d *hfPart) error {
	if d == nil || d.Type == "Metaspace" {
		return nil
	}
	ok := d.Type == "Sequence" && len(d.Decoders) >= 3
	if ok {
		want := []string{"Replace", "ByteFallback", "Fuse", "Strip"}
		for i, p := range d.Decoders {
			if p == nil || i >= len(want) || p.Type != want[i] {
				ok = false
				break
			}
		}
	}
	if !ok {
		return fmt.Errorf("%w: decoder %q is not supported (want Replace, ByteFallback, Fuse, Strip as Llama 2's)", ErrHF, d.Type)
	}
	return nil
}

// byteLevelChars maps each byte to the character GPT-2's byte-level
// vocabulary shows it as: printable Latin-1 bytes as themselves, the others
// as U+0100 onwards in byte order.
func byteLevelChars() (toChar [256]rune, toByte map[rune]byte) {
	toByte = make(map[rune]byte, 256)
	n := 0
	for b := range 256 {
		if b >= 0x21 && b <= 0x7e || b >= 0xa1 && b <= 0xac || b >= 0xae {
			toChar[b] = rune(b)
		} else {
			toChar[b] = rune(256 + n)
			n++
		}
		toByte[toChar[b]] = byte(b)
	}
	return toChar, toByte
}

// hfByteLevel builds the byte-level engine. The engine ranks a merge by the
// id of the merged token (as tiktoken does), which is Hugging Face's merge
// order exactly when each merge makes a new token whose id grows with the
// merge's rank; files where that does not hold are refused.
func hfByteLevel(m *hfModel, merges [][2]string, special map[string]uint32) (*Tokenizer, error) {
	_, toByte := byteLevelChars()
	maxID := uint32(0)
	for _, id := range m.Vocab {
		maxID = max(maxID, id)
	}
	if maxID > 1<<24 {
		return nil, fmt.Errorf("%w: vocabulary id %d is implausibly large", ErrHF, maxID)
	}
	b := &bpe{ranks: newStrTable(len(m.Vocab)), bytes: make([][]byte, maxID+1)}
	for tok, id := range m.Vocab {
		if _, ok := special[tok]; ok {
			continue
		}
		var raw []byte
		for _, r := range tok {
			c, ok := toByte[r]
			if !ok {
				return nil, fmt.Errorf("%w: vocabulary token %q (id %d) is not byte-level", ErrHF, tok, id)
			}
			raw = append(raw, c)
		}
		if raw == nil || b.bytes[id] != nil {
			return nil, fmt.Errorf("%w: vocabulary token %q (id %d) is empty or its id repeats", ErrHF, tok, id)
		}
		if _, dup := b.ranks.get(string(raw)); dup {
			return nil, fmt.Errorf("%w: vocabulary token %q appears twice", ErrHF, tok)
		}
		b.bytes[id] = raw
		b.ranks.put(string(raw), uint64(id))
	}
	for c := range 256 {
		if _, ok := b.ranks.get(string([]byte{byte(c)})); !ok {
			return nil, fmt.Errorf("%w: the byte-level vocabulary lacks byte %#x", ErrHF, c)
		}
	}
	made := make(map[uint32]bool, len(merges))
	last := int64(-1)
	for i, mg := range merges {
		l, lok := m.Vocab[mg[0]]
		r, rok := m.Vocab[mg[1]]
		id, ok := m.Vocab[mg[0]+mg[1]]
		if !lok || !rok || !ok {
			return nil, fmt.Errorf("%w: merge %d %q + %q: a part or the result is not in the vocabulary", ErrHF, i, mg[0], mg[1])
		}
		if int64(id) <= last || id <= l || id <= r {
			return nil, fmt.Errorf("%w: merge %d %q + %q makes id %d, not above the ids before it: merges that are not in vocabulary order are not supported", ErrHF, i, mg[0], mg[1], id)
		}
		last = int64(id)
		made[id] = true
	}
	for id, raw := range b.bytes {
		if len(raw) > 1 && !made[uint32(id)] {
			return nil, fmt.Errorf("%w: vocabulary token %q (id %d) is made by no merge: such tokens are not supported", ErrHF, raw, id)
		}
	}
	return &Tokenizer{name: "hf-bytelevel-bpe", version: "hf-bl.1", bpe: b, vocab: int(maxID) + 1}, nil
}

// hfSentencePiece builds the SentencePiece engine from a converted Llama
// vocabulary. That engine merges the pair whose joined piece scores highest
// (the leftmost on ties) whenever the joined piece exists; Hugging Face
// merges the listed pair of lowest rank. The two agree when the merges are
// every split of every piece into two pieces, grouped by the joined piece,
// the groups in score order: then a piece's score is its group's place.
// Other merge lists are refused.
func hfSentencePiece(m *hfModel, merges [][2]string, special map[string]uint32) (*Tokenizer, error) {
	n := len(m.Vocab)
	pieces := make([]spPiece, n)
	seen := make([]bool, n)
	for tok, id := range m.Vocab {
		if int(id) >= n || seen[id] {
			return nil, fmt.Errorf("%w: vocabulary ids are not 0..%d, each once (token %q has id %d)", ErrHF, n-1, tok, id)
		}
		seen[id] = true
		p := spPiece{piece: tok, typ: pieceNormal, score: float32(-n - 1)}
		if _, ok := special[tok]; ok {
			p.typ = pieceControl
		} else if _, ok := parseBytePiece(tok); ok {
			p.typ = pieceByte
		}
		pieces[id] = p
	}
	unk := -1
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("%w: unk_token %q is not in the vocabulary", ErrHF, *m.UnkToken)
		}
		unk = int(id)
		pieces[id].typ = pieceUnknown
	}
	group := make([]int32, n) // place of each piece's merges + 1; 0: none
	var groups int32
	prev := uint32(0)
	for i, mg := range merges {
		id, ok := m.Vocab[mg[0]+mg[1]]
		_, lok := m.Vocab[mg[0]]
		_, rok := m.Vocab[mg[1]]
		if !ok || !lok || !rok {
			return nil, fmt.Errorf("%w: merge %d %q + %q: a part or the result is not in the vocabulary", ErrHF, i, mg[0], mg[1])
		}
		if pieces[id].typ != pieceNormal {
			return nil, fmt.Errorf("%w: merge %d makes the special or byte piece %q: not supported", ErrHF, i, mg[0]+mg[1])
		}
		if i == 0 || id != prev {
			if group[id] != 0 {
				return nil, fmt.Errorf("%w: the merges making %q are not consecutive (merge %d): only merges ranked by piece, as converted from SentencePiece, are supported", ErrHF, mg[0]+mg[1], i)
			}
			groups++
			group[id] = groups
		}
		prev = id
	}
	// Every split of a piece into two pieces must be a merge, and no other
	// pair: count the splits and compare with the merges.
	splits := 0
	for id, p := range pieces {
		if p.typ != pieceNormal {
			continue
		}
		for k := 1; k < len(p.piece); k++ {
			if !utf8.RuneStart(p.piece[k]) {
				continue
			}
			l, r := p.piece[:k], p.piece[k:]
			_, lok := m.Vocab[l]
			_, rok := m.Vocab[r]
			if (lok || oneRune(l)) && (rok || oneRune(r)) && !(lok && rok) {
				// The engine would join a character outside the vocabulary
				// with its neighbour; Hugging Face turns it into bytes first.
				return nil, fmt.Errorf("%w: piece %q joins %q + %q, one of them not in the vocabulary: not supported", ErrHF, p.piece, l, r)
			}
			if lok && rok {
				if group[id] == 0 {
					return nil, fmt.Errorf("%w: piece %q splits into pieces %q + %q but no merge makes it: only merge lists as converted from SentencePiece are supported", ErrHF, p.piece, p.piece[:k], p.piece[k:])
				}
				splits++
			}
		}
		if group[id] != 0 {
			pieces[id].score = -float32(group[id])
		}
	}
	if splits != len(merges) {
		return nil, fmt.Errorf("%w: %d merges for %d splits of pieces into two pieces: repeated merges are not supported", ErrHF, len(merges), splits)
	}
	if unk < 0 {
		return nil, fmt.Errorf("%w: a byte-fallback BPE needs an unk_token", ErrHF)
	}
	sm := &spModel{pieces: pieces, modelType: 2, byteFallback: true, unkID: unk, bosID: -1, eosID: -1,
		normalizerName: "identity", addDummyPrefix: true, escapeWhitespaces: true}
	sp, err := newSPBPE(sm)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHF, err)
	}
	return &Tokenizer{name: "hf-sentencepiece-bpe", version: "hf-sp.1", sp: sp, vocab: n}, nil
}

func oneRune(s string) bool { return utf8.RuneCountInString(s) == 1 }

// hfBosEos finds BOS and EOS: tokenizer_config.json's bos_token and
// eos_token, else the post-processor template's tokens before and after
// the sequence, else special tokens of the usual names.
func hfBosEos(f *hfFile, cfg []byte, special map[string]uint32) (bos, eos int64) {
	bos, eos = -1, -1
	find := func(s string) int64 {
		if id, ok := special[s]; ok {
			return int64(id)
		}
		return -1
	}
	if len(cfg) > 0 {
		var c struct {
			Bos json.RawMessage `json:"bos_token"`
			Eos json.RawMessage `json:"eos_token"`
		}
		if json.Unmarshal(cfg, &c) == nil {
			bos, eos = find(configToken(c.Bos)), find(configToken(c.Eos))
		}
	}
	if p := f.PostProcessor; p != nil && p.Type == "TemplateProcessing" {
		seq := slices.IndexFunc(p.Single, func(x hfTemplateItem) bool { return x.Sequence != nil })
		if seq > 0 && p.Single[seq-1].SpecialToken != nil && bos < 0 {
			bos = find(p.Single[seq-1].SpecialToken.ID)
		}
		if seq >= 0 && seq+1 < len(p.Single) && p.Single[seq+1].SpecialToken != nil && eos < 0 {
			eos = find(p.Single[seq+1].SpecialToken.ID)
		}
	}
	for _, s := range []string{"<s>", "<|begin_of_text|>", "<|startoftext|>"} {
		if bos < 0 {
			bos = find(s)
		}
	}
	for _, s := range []string{"</s>", "<|endoftext|>", "<|end_of_text|>"} {
		if eos < 0 {
			eos = find(s)
		}
	}
	return bos, eos
}

// configToken reads a tokenizer_config.json token: a string or an object
// with "content".
func configToken(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Content
	}
	return ""
}
