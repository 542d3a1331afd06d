package tokenize

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// spBPE is a SentencePiece BPE model with byte fallback (Llama 2's), encoding
// as SentencePiece's C++ BPE model does (bpe_model.cc): the text normalised
// (a dummy "▁" prefix, spaces escaped to "▁"), split into characters, then
// the adjacent pair whose joined piece has the highest score merged, the
// leftmost on ties, until no joined pair is a piece; symbols that are not
// pieces become their UTF-8 bytes' <0xXX> pieces.
type spBPE struct {
	pieces   map[string]uint32 // normal pieces: merge results and ids
	reserved map[string]uint32 // unknown, control and byte pieces: ids only
	scores   []float32         // by id
	text     []string          // by id
	typ      []int             // by id
	byteID   [256]uint32
	byteOf   map[uint32]byte // byte piece id → its byte
	unkID    uint32
	// normalisation
	addDummyPrefix, escapeWhitespaces bool
	lookups                           *int // tests count piece lookups here; nil otherwise
	// splitSafe: no piece holds "▁" after another character, so no merge can
	// cross the start of a "▁" run that follows a non-"▁" character, and the
	// text can be encoded segment by segment (and segments cached).
	splitSafe bool
	// joins holds the characters that occur in a piece of two or more
	// characters; any other character never takes part in a merge, so
	// segments also end before and after it (Llama 2 has no piece with a
	// newline: lines of code become separate segments, which repeat).
	joins map[rune]bool
	// The merge table by symbol ids: a symbol is a normal piece (its id) or
	// a character that is no piece but occurs in one (ids from len(text)
	// on). merges maps left<<32|right to the joined piece; integer keys
	// instead of hashing the joined text halved the merge loop's time.
	merges *pairTable
	charID map[rune]int32
	ascii  [128]int32 // charID of ASCII characters, -1: none
	joinsA [128]bool  // joins of ASCII characters
	// bigramA[a][b]: some piece holds ASCII a followed by b. Where a text
	// has an a and a b that no piece holds together, no merge can join
	// across them, so a segment also ends between them: minified code (no
	// spaces for hundreds of bytes) then comes in short, cacheable
	// segments instead of long ones merged through the heap.
	bigramA [128][128]bool
}

type spMerge struct {
	id    uint32
	score float32
}

const spaceMark = "\u2581" // ▁

// LoadSentencePiece reads a SentencePiece tokenizer.model (BPE with byte
// fallback, as Llama 2's). Models with parts estkit does not implement yet
// fail with a message naming the part.
func LoadSentencePiece(path string) (*Tokenizer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	m, err := parseSPModel(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sp, err := newSPBPE(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.Sum256(b)
	t := &Tokenizer{name: "sentencepiece", version: "spm-bpe.1:" + hex.EncodeToString(h[:8]), sp: sp,
		special: map[string]uint32{}, bos: -1, eos: -1, vocab: len(m.pieces)}
	if m.bosID >= 0 && m.bosID < len(m.pieces) {
		t.bos = int64(m.bosID)
		t.special[m.pieces[m.bosID].piece] = uint32(m.bosID)
	}
	if m.eosID >= 0 && m.eosID < len(m.pieces) {
		t.eos = int64(m.eosID)
		t.special[m.pieces[m.eosID].piece] = uint32(m.eosID)
	}
	return t, nil
}

func newSPBPE(m *spModel) (*spBPE, error) {
	switch {
	case m.modelType != 2:
		return nil, fmt.Errorf("%w: model type %d is not BPE (2); unigram models are not supported", ErrModel, m.modelType)
	case !m.byteFallback:
		return nil, fmt.Errorf("%w: byte_fallback is off; only byte-fallback BPE models are supported", ErrModel)
	case m.normalizerName != "identity" || m.charsMap:
		return nil, fmt.Errorf("%w: normalizer %q (only \"identity\" without a character map is supported)", ErrModel, m.normalizerName)
	case m.removeExtraWhitespaces:
		return nil, fmt.Errorf("%w: remove_extra_whitespaces is not supported", ErrModel)
	case m.treatWhitespaceAsSuffix:
		return nil, fmt.Errorf("%w: treat_whitespace_as_suffix is not supported", ErrModel)
	}
	sp := &spBPE{pieces: map[string]uint32{}, reserved: map[string]uint32{}, addDummyPrefix: m.addDummyPrefix,
		escapeWhitespaces: m.escapeWhitespaces, unkID: uint32(m.unkID), splitSafe: true, joins: map[rune]bool{}}
	bytesSeen := 0
	var seenByte [256]bool
	sp.byteOf = map[uint32]byte{}
	for id, p := range m.pieces {
		sp.scores = append(sp.scores, p.score)
		sp.text = append(sp.text, p.piece)
		sp.typ = append(sp.typ, p.typ)
		switch p.typ {
		case pieceNormal:
			if _, dup := sp.pieces[p.piece]; dup {
				return nil, fmt.Errorf("%w: piece %q appears twice", ErrModel, p.piece)
			}
			sp.pieces[p.piece] = uint32(id)
			if strings.Contains(strings.TrimLeft(p.piece, spaceMark), spaceMark) {
				sp.splitSafe = false
			}
			if utf8.RuneCountInString(p.piece) > 1 {
				for _, r := range p.piece {
					sp.joins[r] = true
				}
				for k := 1; k < len(p.piece); k++ {
					if a, b := p.piece[k-1], p.piece[k]; a < utf8.RuneSelf && b < utf8.RuneSelf {
						sp.bigramA[a][b] = true
					}
				}
			}
		case pieceUnknown, pieceControl:
			sp.reserved[p.piece] = uint32(id)
		case pieceByte:
			v, ok := parseBytePiece(p.piece)
			if !ok || seenByte[v] {
				return nil, fmt.Errorf("%w: byte piece %q is not <0xHH> or repeats a byte", ErrModel, p.piece)
			}
			seenByte[v] = true
			sp.byteID[v] = uint32(id)
			sp.byteOf[uint32(id)] = v
			sp.reserved[p.piece] = uint32(id)
			bytesSeen++
		case pieceUserDefined:
			return nil, fmt.Errorf("%w: user-defined piece %q: user-defined symbols are not supported", ErrModel, p.piece)
		case pieceUnused:
			return nil, fmt.Errorf("%w: unused piece %q: unused pieces are not supported", ErrModel, p.piece)
		default:
			return nil, fmt.Errorf("%w: piece %d has type %d", ErrModel, id, p.typ)
		}
	}
	if bytesSeen != 256 {
		return nil, fmt.Errorf("%w: %d byte pieces, want 256 for byte fallback", ErrModel, bytesSeen)
	}
	sp.buildMerges()
	if m.unkID < 0 || m.unkID >= len(m.pieces) || m.pieces[m.unkID].typ != pieceUnknown {
		return nil, fmt.Errorf("%w: unk_id %d is not an unknown piece", ErrModel, m.unkID)
	}
	return sp, nil
}

// buildMerges fills charID and merges: every split of every normal piece
// into two possible symbols.
func (sp *spBPE) buildMerges() {
	sp.charID = map[rune]int32{}
	next := int32(len(sp.text))
	for r := range sp.joins {
		if id, ok := sp.pieces[string(r)]; ok {
			sp.charID[r] = int32(id)
		} else {
			sp.charID[r] = next
			next++
		}
	}
	for piece, id := range sp.pieces {
		if utf8.RuneCountInString(piece) == 1 {
			r, _ := utf8.DecodeRuneInString(piece)
			if _, ok := sp.charID[r]; !ok {
				sp.charID[r] = int32(id)
			}
		}
	}
	for c := range sp.ascii {
		sp.joinsA[c] = sp.joins[rune(c)]
		sp.ascii[c] = -1
		if id, ok := sp.charID[rune(c)]; ok {
			sp.ascii[c] = id
		}
	}
	symbol := func(x string) (int32, bool) {
		if id, ok := sp.pieces[x]; ok {
			return int32(id), true
		}
		if r, n := utf8.DecodeRuneInString(x); n == len(x) {
			id, ok := sp.charID[r]
			return id, ok
		}
		return 0, false
	}
	type merge struct {
		l, r int32
		m    spMerge
	}
	var merges []merge
	for piece, id := range sp.pieces {
		for k := 1; k < len(piece); k++ {
			if !utf8.RuneStart(piece[k]) {
				continue
			}
			l, lok := symbol(piece[:k])
			r, rok := symbol(piece[k:])
			if lok && rok {
				merges = append(merges, merge{l, r, spMerge{id: id, score: sp.scores[id]}})
			}
		}
	}
	sp.merges = newPairTable(len(merges))
	for _, m := range merges {
		sp.merges.put(m.l, m.r, m.m)
	}
}

// joinsRune tells whether r occurs in a piece of two or more characters.
func (sp *spBPE) joinsRune(r rune) bool {
	if r < 128 {
		return sp.joinsA[r]
	}
	return sp.joins[r]
}

// symbolOf is the symbol id of character r, -1 when it takes part in no
// merge.
func (sp *spBPE) symbolOf(r rune) int32 {
	if r < 128 {
		return sp.ascii[r]
	}
	if id, ok := sp.charID[r]; ok {
		return id
	}
	return -1
}

// parseBytePiece reads "<0xHH>" (two upper-case hex digits, as SentencePiece
// writes them).
func parseBytePiece(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(s[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

// normalize applies the dummy prefix and whitespace escaping.
func (sp *spBPE) normalize(text string) string {
	return string(sp.normalizeInto(nil, text))
}

// normalizeInto appends the normalized text to buf: one pass, so that an
// Encoder reuses one buffer rather than copying each text twice (the
// copies and their garbage were a tenth of encoding's time).
func (sp *spBPE) normalizeInto(buf []byte, text string) []byte {
	if text == "" {
		return buf
	}
	if !utf8.ValidString(text) {
		// SentencePiece's normaliser turns each invalid byte into U+FFFD.
		text = replaceInvalidBytes(text)
	}
	space := " "
	if sp.escapeWhitespaces {
		space = spaceMark
	}
	if sp.addDummyPrefix {
		buf = append(buf, space...)
	}
	if !sp.escapeWhitespaces {
		return append(buf, text...)
	}
	for {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			return append(buf, text...)
		}
		buf = append(buf, text[:i]...)
		buf = append(buf, spaceMark...)
		text = text[i+1:]
	}
}

// replaceInvalidBytes replaces every byte that is not part of a valid UTF-8
// sequence with U+FFFD, one for each byte (strings.ToValidUTF8 would fold a
// run into one).
func replaceInvalidBytes(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// encodeSP appends the ids of text.
func (e *Encoder) encodeSP(text string, out []uint32) []uint32 {
	sp := e.t.sp
	e.norm = sp.normalizeInto(e.norm[:0], text)
	s := unsafe.String(unsafe.SliceData(e.norm), len(e.norm)) // the buffer is not written again during this call
	if !sp.splitSafe {
		return sp.encodeSegmentWith(&e.sp, s, out)
	}
	for len(s) > 0 {
		n := sp.segment(s)
		seg := s[:n]
		s = s[n:]
		if ids, ok := e.lookup(seg); ok {
			out = append(out, ids...)
			continue
		}
		start := len(out)
		out = sp.encodeSegmentWith(&e.sp, seg, out)
		e.remember(seg, out[start:])
	}
	return out
}

// segment returns the length of the segment at the start of s: a run of
// "▁" and the characters up to the next "▁" that follows a non-"▁", or a
// lone character that no merge takes, or the characters up to one, or up
// to two ASCII characters that no piece holds together.
func (sp *spBPE) segment(s string) int {
	r, n := utf8.DecodeRuneInString(s)
	if !sp.joinsRune(r) {
		return n
	}
	i := 0
	for strings.HasPrefix(s[i:], spaceMark) {
		i += len(spaceMark)
	}
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if !sp.joinsA[c] || i > 0 && s[i-1] < utf8.RuneSelf && !sp.bigramA[s[i-1]][c] {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '\u2581' && i > 0 && !strings.HasSuffix(s[:i], spaceMark) || !sp.joinsRune(r) {
			return i
		}
		i += n
	}
	return len(s)
}

type spSym struct {
	start, end int // bytes of the segment; end == start: merged away
	prev, next int
	id         int32 // symbol id (see spBPE.merges); -1: merges with nothing
}

type spPair struct {
	score       float32
	left, right int
	lid, rid    int32  // the symbols' ids when the pair was found: a changed symbol no longer matches
	id          uint32 // the joined piece
}

// spBefore orders pairs: the higher score first, then the leftmost.
func spBefore(a, b *spPair) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.left < b.left
}

// spPush and spPop keep h a binary heap by spBefore. Written out rather
// than through container/heap, whose interface boxing allocated once per
// candidate pair (32 M allocations per 20 MB of text).
func spPush(h []spPair, p spPair) []spPair {
	h = append(h, p)
	for i := len(h) - 1; i > 0; {
		up := (i - 1) / 2
		if !spBefore(&h[i], &h[up]) {
			break
		}
		h[i], h[up] = h[up], h[i]
		i = up
	}
	return h
}

func spPop(h []spPair) (spPair, []spPair) {
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && spBefore(&h[l], &h[m]) {
			m = l
		}
		if r < len(h) && spBefore(&h[r], &h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return top, h
}

// spScratch holds an Encoder's reusable buffers for encodeSegment.
type spScratch struct {
	syms []spSym
	heap []spPair
}

// encodeSegment runs the merges over seg with the heap and appends the ids:
// the reference the scan of short segments is fuzzed against.
func (sp *spBPE) encodeSegment(seg string, out []uint32) []uint32 {
	var sc spScratch
	return sp.mergeHeap(&sc, seg, out)
}

// encodeSegmentWith runs the merges over seg and appends the ids.
func (sp *spBPE) encodeSegmentWith(sc *spScratch, seg string, out []uint32) []uint32 {
	if len(seg) <= spShortSegment {
		return sp.mergeScan(seg, out)
	}
	return sp.mergeHeap(sc, seg, out)
}

// spShortSegment is the length in bytes up to which a segment's merges run
// as a scan: most segments are a word or two, for which finding the best
// pair by scanning a few scores beat pushing and popping a heap (the heap
// was a quarter of Llama 2 encoding).
const spShortSegment = 32

// mergeScan: the merges of a short segment (at most spShortSegment
// characters). Each symbol keeps the merge it would make with the next;
// the highest score is merged, the leftmost on ties (as the heap orders
// them), and only the merged symbol's and its left neighbour's pairs are
// found again.
func (sp *spBPE) mergeScan(seg string, out []uint32) []uint32 {
	type sym struct {
		start int32
		id    int32   // symbol id, -1: merges with nothing
		next  int32   // joined piece with the next symbol, -1: none
		score float32 // that piece's score
	}
	var buf [spShortSegment + 1]sym
	syms := buf[:0]
	for i := 0; i < len(seg); {
		r, n := utf8.DecodeRuneInString(seg[i:])
		syms = append(syms, sym{start: int32(i), id: sp.symbolOf(r), next: -1})
		i += n
	}
	pair := func(k int) {
		syms[k].next = -1
		if k+1 >= len(syms) {
			return
		}
		l, r := syms[k].id, syms[k+1].id
		if l < 0 || r < 0 {
			return
		}
		if sp.lookups != nil {
			*sp.lookups++
		}
		if m, ok := sp.merges.get(l, r); ok {
			syms[k].next, syms[k].score = int32(m.id), m.score
		}
	}
	for k := range syms {
		pair(k)
	}
	for {
		best := -1
		for k := range syms {
			if syms[k].next >= 0 && (best < 0 || syms[k].score > syms[best].score) {
				best = k
			}
		}
		if best < 0 {
			break
		}
		syms[best].id = syms[best].next
		syms = append(syms[:best+1], syms[best+2:]...)
		pair(best)
		if best > 0 {
			pair(best - 1)
		}
	}
	for k := range syms {
		end := len(seg)
		if k+1 < len(syms) {
			end = int(syms[k+1].start)
		}
		out = sp.emit(seg[syms[k].start:end], syms[k].id, out)
	}
	return out
}

// emit appends the ids of a merged symbol: its piece, or the reserved piece
// of its text, or the byte pieces of its bytes.
func (sp *spBPE) emit(piece string, id int32, out []uint32) []uint32 {
	if id >= 0 && int(id) < len(sp.text) && sp.typ[id] == pieceNormal {
		return append(out, uint32(id))
	}
	if id, ok := sp.reserved[piece]; ok && sp.typ[id] != pieceUnknown {
		return append(out, id)
	}
	for k := 0; k < len(piece); k++ { // byte fallback
		out = append(out, sp.byteID[piece[k]])
	}
	return out
}

// mergeHeap: the merges of any segment, with a heap of candidate pairs.
func (sp *spBPE) mergeHeap(sc *spScratch, seg string, out []uint32) []uint32 {
	if seg == "" {
		return out
	}
	syms := sc.syms[:0]
	for i := 0; i < len(seg); {
		r, n := utf8.DecodeRuneInString(seg[i:])
		syms = append(syms, spSym{start: i, end: i + n, prev: len(syms) - 1, next: len(syms) + 1, id: sp.symbolOf(r)})
		i += n
	}
	syms[len(syms)-1].next = -1
	h := sc.heap[:0]
	add := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		lid, rid := syms[l].id, syms[r].id
		if lid < 0 || rid < 0 {
			return
		}
		if sp.lookups != nil {
			*sp.lookups++
		}
		if m, ok := sp.merges.get(lid, rid); ok {
			h = spPush(h, spPair{score: m.score, left: l, right: r, lid: lid, rid: rid, id: m.id})
		}
	}
	for i := 1; i < len(syms); i++ {
		add(i-1, i)
	}
	for len(h) > 0 {
		var p spPair
		p, h = spPop(h)
		l, r := &syms[p.left], &syms[p.right]
		if l.end == l.start || r.end == r.start || l.id != p.lid || r.id != p.rid || l.next != p.right {
			continue // stale: a symbol changed since the pair was found
		}
		l.end = r.end
		l.id = int32(p.id)
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.start, r.end = 0, 0
		add(l.prev, p.left)
		add(p.left, l.next)
	}
	sc.syms, sc.heap = syms, h // keep the grown buffers
	for i := 0; i >= 0; i = syms[i].next {
		out = sp.emit(seg[syms[i].start:syms[i].end], syms[i].id, out)
	}
	return out
}

// decode turns ids back into text as SentencePiece decodes: the "▁" that
// starts the first normal piece (the dummy prefix) dropped, "▁" back to
// spaces, runs of byte pieces joined into bytes with each byte that does not
// form valid UTF-8 shown as U+FFFD, control pieces omitted, unknown as " ⁇ ".
func (sp *spBPE) decode(ids []uint32) ([]byte, error) {
	var out, run []byte
	flush := func() {
		out = append(out, replaceInvalidBytes(string(run))...)
		run = run[:0]
	}
	first := true
	for i, id := range ids {
		if int(id) >= len(sp.text) {
			return nil, fmt.Errorf("tokenize: id %d at position %d is outside the vocabulary (%d ids)", id, i, len(sp.text))
		}
		if sp.typ[id] == pieceByte {
			run = append(run, sp.byteOf[id])
			first = false
			continue
		}
		flush()
		switch sp.typ[id] {
		case pieceControl:
		case pieceUnknown:
			out = append(out, " \u2047 "...)
			first = false
		default:
			piece := sp.text[id]
			if first && sp.addDummyPrefix {
				piece = strings.TrimPrefix(piece, spaceMark)
			}
			out = append(out, strings.ReplaceAll(piece, spaceMark, " ")...)
			first = false
		}
	}
	flush()
	return out, nil
}
