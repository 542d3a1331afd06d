package tokenize

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// strTable maps strings to uint64 values. It is the encoders' hot lookup
// (a piece's rank, a cached piece's ids) and is our own because Go's map
// with string keys was most of the encoders' time (40% of estkit shard's
// CPU profile: hashing, control-group matching and a key comparison through
// a pointer). A key's first 16 bytes live in its slot as two words, so that
// looking up a key of up to 16 bytes (nearly every GPT-2 piece) hashes two
// words and reads one slot; the rest of a longer key (SentencePiece
// segments of indented code) is kept in one byte arena and compared there.
//
// Open addressing with linear probing, at most three quarters full. The
// empty string is not a key. Not safe for concurrent writes; concurrent
// reads are.
type strTable struct {
	slots []strSlot
	mask  uint64
	n     int
	tails []byte // bytes 16.. of the longer keys
	seed  maphash.Seed
}

// strSlot is 32 bytes: two to a cache line, never straddling one.
type strSlot struct {
	w0, w1 uint64 // the key's first 16 bytes, little-endian, zero-padded
	val    uint64
	n      uint32 // key length; 0: empty
	tail   uint32 // where bytes 16.. of a longer key start in tails
}

func newStrTable(capacity int) *strTable {
	t := &strTable{seed: maphash.MakeSeed()}
	t.alloc(capacity)
	return t
}

func (t *strTable) alloc(capacity int) {
	size := 16
	// At most 3/4 full: than half full, the smaller table missed the
	// processor's caches less (+3 to 5% on GPT-2).
	for size*3 < 4*capacity {
		size *= 2
	}
	t.slots = make([]strSlot, size)
	t.mask = uint64(size - 1)
	t.n = 0
}

// keyWords returns the first 16 bytes of s as two little-endian words,
// zero-padded, reading only inside s: overlapping loads instead of a loop.
func keyWords(s string) (w0, w1 uint64) {
	n := len(s)
	p := unsafe.Pointer(unsafe.StringData(s))
	switch {
	case n >= 16:
		w0, w1 = load64(p, 0), load64(p, 8)
	case n >= 8:
		w0 = load64(p, 0)
		// the last 8 bytes, shifted so that byte 8 lands at bit 0; n == 8
		// shifts by 64, which gives 0
		w1 = load64(p, n-8) >> (8 * uint(16-n))
	case n >= 4:
		lo, hi := uint64(load32(p, 0)), uint64(load32(p, n-4))
		w0 = lo | hi<<(8*uint(n-4))
	case n > 0:
		w0 = uint64(load8(p, 0)) | uint64(load8(p, n/2))<<(8*uint(n/2)) | uint64(load8(p, n-1))<<(8*uint(n-1))
	}
	return w0, w1
}

func load64(p unsafe.Pointer, off int) uint64 {
	return *(*uint64)(unsafe.Add(p, off)) // x86-64 and arm64 load unaligned words
}

func load32(p unsafe.Pointer, off int) uint32 {
	return *(*uint32)(unsafe.Add(p, off))
}

func load8(p unsafe.Pointer, off int) byte {
	return *(*byte)(unsafe.Add(p, off))
}

// hash: of the two words for short keys; of all the bytes for longer ones,
// whose first 16 bytes are often the same (runs of indentation).
func (t *strTable) hash(s string, w0, w1 uint64) uint64 {
	if len(s) > 16 {
		return maphash.String(t.seed, s)
	}
	return hashShort(w0, w1, len(s))
}

func hashShort(w0, w1 uint64, n int) uint64 {
	hi, lo := bits.Mul64(w0^0x9e3779b97f4a7c15, w1^uint64(n)<<56^0xd6e8feb86659fd93)
	return hi ^ lo
}

// get returns the value of key s.
func (t *strTable) get(s string) (uint64, bool) {
	n := len(s)
	w0, w1 := keyWords(s)
	for i := t.hash(s, w0, w1) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		if sl.w0 == w0 && sl.w1 == w1 && int(sl.n) == n && (n <= 16 || t.tailIs(sl, s)) {
			return sl.val, n != 0
		}
		if sl.n == 0 {
			return 0, false
		}
	}
}

func (t *strTable) tailIs(sl *strSlot, s string) bool {
	return string(t.tails[sl.tail:sl.tail+sl.n-16]) == s[16:]
}

// put sets the value of key s (s must not be empty).
func (t *strTable) put(s string, v uint64) {
	n := len(s)
	if n == 0 || n > 1<<20 {
		panic("tokenize: strTable.put: empty or implausibly long key")
	}
	if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	w0, w1 := keyWords(s)
	for i := t.hash(s, w0, w1) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		if sl.n == 0 {
			*sl = strSlot{w0: w0, w1: w1, val: v, n: uint32(n)}
			if n > 16 {
				if len(t.tails)+n > 1<<32 {
					panic("tokenize: strTable: over 4 GiB of keys")
				}
				sl.tail = uint32(len(t.tails))
				t.tails = append(t.tails, s[16:]...)
			}
			t.n++
			return
		}
		if sl.w0 == w0 && sl.w1 == w1 && int(sl.n) == n && (n <= 16 || t.tailIs(sl, s)) {
			sl.val = v
			return
		}
	}
}

// grow doubles the slots. The hash of a longer key needs its bytes: they
// are put back together from the slot and the arena.
func (t *strTable) grow() {
	old := t.slots
	t.alloc(len(old))
	var key [16]byte
	for i := range old {
		sl := &old[i]
		if sl.n == 0 {
			continue
		}
		var h uint64
		if sl.n > 16 {
			binary.LittleEndian.PutUint64(key[:8], sl.w0)
			binary.LittleEndian.PutUint64(key[8:], sl.w1)
			h = maphash.String(t.seed, string(key[:])+string(t.tails[sl.tail:sl.tail+sl.n-16]))
		} else {
			h = hashShort(sl.w0, sl.w1, int(sl.n))
		}
		for j := h & t.mask; ; j = (j + 1) & t.mask {
			if t.slots[j].n == 0 {
				t.slots[j] = *sl
				t.n++
				break
			}
		}
	}
}

// len returns the number of keys.
func (t *strTable) len() int { return t.n }

// reset empties the table, keeping its slots.
func (t *strTable) reset() {
	clear(t.slots)
	t.n = 0
	t.tails = t.tails[:0]
}

// pairTable maps a pair of symbol ids (left<<32 | right, both below 2³¹)
// to its merge: SentencePiece's merge loop looks up every adjacent pair,
// and Go's map was a third of that loop. Open addressing, at most half
// full; a slot's key has bit 63 set so that zero means empty.
type pairTable struct {
	slots []pairSlot
	mask  uint64
	n     int
}

type pairSlot struct {
	key uint64
	m   spMerge
}

const pairUsed = 1 << 63

func newPairTable(capacity int) *pairTable {
	size := 16
	for size < 2*capacity {
		size *= 2
	}
	return &pairTable{slots: make([]pairSlot, size), mask: uint64(size - 1)}
}

func pairHash(k uint64) uint64 {
	hi, lo := bits.Mul64(k, 0x9e3779b97f4a7c15)
	return hi ^ lo
}

func (t *pairTable) get(left, right int32) (spMerge, bool) {
	k := uint64(uint32(left))<<32 | uint64(uint32(right)) | pairUsed
	for i := pairHash(k) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		if sl.key == k {
			return sl.m, true
		}
		if sl.key == 0 {
			return spMerge{}, false
		}
	}
}

// put sets the merge of a pair; the table must have been made with room.
func (t *pairTable) put(left, right int32, m spMerge) {
	if left < 0 || right < 0 || 2*(t.n+1) > len(t.slots) {
		panic("tokenize: pairTable.put: negative id or full table")
	}
	k := uint64(uint32(left))<<32 | uint64(uint32(right)) | pairUsed
	for i := pairHash(k) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		if sl.key == 0 {
			*sl = pairSlot{key: k, m: m}
			t.n++
			return
		}
		if sl.key == k {
			sl.m = m
			return
		}
	}
}
