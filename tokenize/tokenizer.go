package tokenize

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tiktoken-go/tokenizer/codec"
)

// Tokenizer encodes text to token ids and back. It is safe for concurrent
// use.
type Tokenizer struct {
	name    string
	version string            // fingerprint part: changes when the ids could
	bpe     *bpe              // GPT-2 byte-level BPE, or
	sp      *spBPE            // a SentencePiece BPE model
	special map[string]uint32 // special-token text → id
	bos     int64             // -1: none
	eos     int64
	vocab   int
	shared  sharedCache // pieces every Encoder of t has encoded
}

// Name is the tokenizer's name ("gpt2").
func (t *Tokenizer) Name() string { return t.name }

// Fingerprint identifies the tokenizer for manifests: a change of
// vocabulary or of encoding rules changes it.
func (t *Tokenizer) Fingerprint() string { return t.name + "@" + t.version }

// VocabSize is the number of ids, special tokens included.
func (t *Tokenizer) VocabSize() int { return t.vocab }

// Clone returns a tokenizer with the same vocabulary and rules and a cache
// of its own, empty: for measuring a cold start, or for keeping two
// workloads' caches apart.
func (t *Tokenizer) Clone() *Tokenizer {
	c := &Tokenizer{name: t.name, version: t.version, bpe: t.bpe, sp: t.sp, special: t.special, bos: t.bos, eos: t.eos, vocab: t.vocab}
	return c
}

// EncodeOptions adjust Encode. The zero value encodes text as text
// (tiktoken's encode_ordinary).
type EncodeOptions struct {
	BOS, EOS       bool // add the tokenizer's BOS / EOS id
	AllowedSpecial bool // recognise special-token text (e.g. <|endoftext|>) as its id
}

// ErrNoToken: the tokenizer has no BOS or EOS id to add.
var ErrNoToken = errors.New("tokenize: no such special token")

var (
	gpt2Once sync.Once
	gpt2Tok  *Tokenizer
	gpt2Err  error
)

// GPT2 returns the built-in GPT-2 tokenizer (tiktoken "gpt2" / r50k_base).
// Its ranks come from github.com/tiktoken-go/tokenizer, which embeds them,
// so no file or network is needed; the encoder is estkit's own.
func GPT2() (*Tokenizer, error) {
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = loadGPT2() })
	return gpt2Tok, gpt2Err
}

const gpt2EndOfText = 50256

func loadGPT2() (*Tokenizer, error) {
	c := codec.NewR50kBase()
	b := &bpe{ranks: newStrTable(gpt2EndOfText), bytes: make([][]byte, gpt2EndOfText)}
	for id := 0; id < gpt2EndOfText; id++ {
		// Decoding one id gives its bytes (the codec's default error mode
		// returns bytes unchanged): the only way to the embedded ranks.
		s, err := c.Decode([]uint{uint(id)})
		if err != nil {
			return nil, fmt.Errorf("tokenize: gpt2 rank %d: %w", id, err)
		}
		b.ranks.put(s, uint64(id))
		b.bytes[id] = []byte(s)
	}
	if b.ranks.len() != gpt2EndOfText {
		return nil, fmt.Errorf("tokenize: gpt2 ranks: %d distinct tokens, want %d", b.ranks.len(), gpt2EndOfText)
	}
	for c := 0; c < 256; c++ {
		if _, ok := b.ranks.get(string([]byte{byte(c)})); !ok {
			return nil, fmt.Errorf("tokenize: gpt2 ranks lack byte %#x", c)
		}
	}
	return &Tokenizer{name: "gpt2", version: "r50k_base.1", bpe: b,
		special: map[string]uint32{"<|endoftext|>": gpt2EndOfText}, bos: -1, eos: gpt2EndOfText, vocab: gpt2EndOfText + 1}, nil
}

// Encoder encodes with a cache of recent pieces. It is not safe for
// concurrent use: make one per goroutine.
type Encoder struct {
	t     *Tokenizer
	cache *strTable // piece → offset<<32 | count of its ids in cached
	// cached holds the cache's ids back to back: one slice, not one
	// allocation per piece (on code, 440 thousand per 50 MB).
	cached []uint32
	sp     spScratch // SentencePiece merge buffers, reused across calls
	norm   []byte    // SentencePiece's normalized text, reused across calls
}

// maxCache bounds an Encoder's piece cache; it is emptied when full.
const maxCache = 1 << 18

// NewEncoder returns an Encoder of t.
func (t *Tokenizer) NewEncoder() *Encoder {
	return &Encoder{t: t, cache: newStrTable(1024)}
}

// Encode returns the ids of text (a convenience: an Encoder amortises its
// cache over many calls).
func (t *Tokenizer) Encode(text string, o EncodeOptions) ([]uint32, error) {
	return t.NewEncoder().Encode(text, o, nil)
}

// Encode appends the ids of text to out.
func (e *Encoder) Encode(text string, o EncodeOptions, out []uint32) ([]uint32, error) {
	t := e.t
	if err := t.checkOptions(o); err != nil {
		return nil, err
	}
	if o.BOS {
		out = append(out, uint32(t.bos))
	}
	if o.AllowedSpecial && len(t.special) > 0 {
		m := t.newSpecialMatcher(text)
		from := 0
		for {
			at, id, n := m.next(from)
			if at < 0 {
				break
			}
			out = e.encodeOrdinary(text[from:at], out)
			out = append(out, id)
			from = at + n
		}
		text = text[from:]
	}
	out = e.encodeOrdinary(text, out)
	if o.EOS {
		out = append(out, uint32(t.eos))
	}
	return out, nil
}

// checkOptions fails for a BOS or EOS the tokenizer does not have.
func (t *Tokenizer) checkOptions(o EncodeOptions) error {
	if o.BOS && t.bos < 0 {
		return fmt.Errorf("%w: %s has no BOS", ErrNoToken, t.name)
	}
	if o.EOS && t.eos < 0 {
		return fmt.Errorf("%w: %s has no EOS", ErrNoToken, t.name)
	}
	return nil
}

// specialMatcher finds special-token texts left to right. It remembers each
// token's next match and searches again only once the cursor has passed
// it, so a text costs one pass per special token, not one per match.
type specialMatcher struct {
	text     string
	toks     []string
	ids      []uint32
	pos      []int // next match of toks[k] at or after the last search; -1: none left
	after    []int // where that search started
	searches int   // strings.Index calls, for the test that they stay few
}

func (t *Tokenizer) newSpecialMatcher(text string) *specialMatcher {
	m := &specialMatcher{text: text}
	for s, id := range t.special {
		m.toks = append(m.toks, s)
		m.ids = append(m.ids, id)
		m.pos = append(m.pos, 0)
		m.after = append(m.after, -1)
	}
	return m
}

// next returns the earliest match at or after from (the longest at one
// position), or at = -1.
func (m *specialMatcher) next(from int) (at int, id uint32, n int) {
	at = -1
	for k, s := range m.toks {
		if m.pos[k] >= 0 && (m.after[k] < 0 || m.pos[k] < from) {
			m.searches++
			if i := strings.Index(m.text[from:], s); i >= 0 {
				m.pos[k] = from + i
			} else {
				m.pos[k] = -1
			}
			m.after[k] = from
		}
		if p := m.pos[k]; p >= 0 && (at < 0 || p < at || p == at && len(s) > n) {
			at, id, n = p, m.ids[k], len(s)
		}
	}
	return at, id, n
}

func (e *Encoder) encodeOrdinary(text string, out []uint32) []uint32 {
	// One growth up front: texts run at 2 to 5 bytes per token, and growing
	// by doubling was most of the encoder's copying.
	out = slices.Grow(out, len(text)/3+1)
	if e.t.sp != nil {
		return e.encodeSP(text, out)
	}
	for i := 0; i < len(text); {
		n := gpt2Piece(text, i)
		piece := text[i : i+n]
		i += n
		// A piece that is one token (most are) is found in the
		// vocabulary, as tiktoken does, before the cache: on code, whose
		// many identifiers grow the cache past the processor's caches,
		// this was 10% faster, and neutral on English.
		if id, ok := e.t.bpe.id(piece); ok {
			out = append(out, id)
			continue
		}
		if ids, ok := e.lookup(piece); ok {
			out = append(out, ids...)
			continue
		}
		start := len(out)
		out = e.t.bpe.encodePiece(piece, out)
		e.remember(piece, out[start:])
	}
	return out
}

// lookup finds the ids of a piece in the Encoder's cache, else in the
// cache the Tokenizer's Encoders share (and copies them to its own). The
// ids are valid until the Encoder's next store.
func (e *Encoder) lookup(piece string) ([]uint32, bool) {
	if v, ok := e.cache.get(piece); ok {
		off, n := v>>32, v&(1<<32-1)
		return e.cached[off : off+n : off+n], true
	}
	if len(piece) > maxCachedPiece {
		return nil, false
	}
	ids, ok := e.t.shared.get(piece)
	if ok {
		e.store(piece, ids)
	}
	return ids, ok
}

// maxCachedPiece: longer pieces are rare and would fill the caches.
const maxCachedPiece = 256

// remember caches the ids of a piece (GPT-2) or segment (SentencePiece),
// in the Encoder's cache and the shared one.
func (e *Encoder) remember(piece string, ids []uint32) {
	if len(piece) > maxCachedPiece {
		return
	}
	e.store(piece, ids)
	e.t.shared.put(piece, ids)
}

// store copies ids into the Encoder's cache (the table copies the key's
// bytes into its slots and arena, so a piece of a text does not keep the
// text alive).
func (e *Encoder) store(piece string, ids []uint32) {
	if e.cache.len() >= maxCache {
		e.cache.reset()
		e.cached = e.cached[:0]
	}
	e.cache.put(piece, uint64(len(e.cached))<<32|uint64(len(ids)))
	e.cached = append(e.cached, ids...)
}

// sharedCache holds pieces encoded by any Encoder of a Tokenizer, so that
// goroutines encoding in parallel do not each redo the merges of every new
// piece (which kept two goroutines at about 1.65× one). A sync.Map: its
// loads, which come only after an Encoder's own cache missed, write no
// shared memory; a full cache takes no more pieces. Values are never
// modified.
type sharedCache struct {
	m sync.Map // string → []uint32
	n atomic.Int64
}

// maxShared bounds the shared cache's pieces.
const maxShared = 1 << 16

func (c *sharedCache) get(piece string) ([]uint32, bool) {
	v, ok := c.m.Load(piece)
	if !ok {
		return nil, false
	}
	return v.([]uint32), true
}

// put adds a copy of a piece and its ids, unless the cache is full.
func (c *sharedCache) put(piece string, ids []uint32) {
	if c.n.Load() >= maxShared {
		return
	}
	if _, loaded := c.m.LoadOrStore(strings.Clone(piece), slices.Clone(ids)); !loaded {
		c.n.Add(1)
	}
}

// Decode returns the bytes of ids. For GPT-2, Decode(Encode(x)) == x; for
// SentencePiece models, as SentencePiece decodes (not always x: a literal
// "▁" comes back as a space).
func (t *Tokenizer) Decode(ids []uint32) ([]byte, error) {
	if t.sp != nil {
		return t.sp.decode(ids)
	}
	var out []byte
	for i, id := range ids {
		switch {
		case int(id) < len(t.bpe.bytes) && t.bpe.bytes[id] != nil:
			out = append(out, t.bpe.bytes[id]...)
		default:
			s, ok := t.specialText(id)
			if !ok {
				return nil, fmt.Errorf("tokenize: id %d at position %d is outside the %s vocabulary (%d ids)", id, i, t.name, t.vocab)
			}
			out = append(out, s...)
		}
	}
	return out, nil
}

func (t *Tokenizer) specialText(id uint32) (string, bool) {
	for s, sid := range t.special {
		if sid == id {
			return s, true
		}
	}
	return "", false
}

// EncodeBatch encodes texts on workers goroutines (0: one per CPU) and
// returns the ids in input order.
func (t *Tokenizer) EncodeBatch(texts []string, o EncodeOptions, workers int) ([][]uint32, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if err := t.checkOptions(o); err != nil {
		return nil, err // an option the tokenizer cannot honour: say it once
	}
	out := make([][]uint32, len(texts))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	// grab hands out the next run of texts of about batchGrab bytes: by
	// bytes rather than by count, so that a few long documents do not leave
	// one worker busy while the others wait.
	grab := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		i, n := next, 0
		for next < len(texts) && (next == i || n < batchGrab) {
			n += len(texts[next])
			next++
		}
		return i, next
	}
	for w := range workers {
		wg.Go(func() {
			e := t.NewEncoder()
			var scratch []uint32 // encode here, keep an exact-size copy
			for {
				i, j := grab()
				if i == j {
					return
				}
				for ; i < j; i++ {
					ids, err := e.Encode(texts[i], o, scratch[:0])
					if err != nil {
						errs[w] = err
						return
					}
					scratch = ids
					out[i] = slices.Clone(ids)
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// batchGrab is the bytes of text an EncodeBatch worker takes at a time.
const batchGrab = 64 << 10
