package tokenize

import (
	"container/heap"
)

// bpe holds a byte-level BPE vocabulary: token bytes ↔ rank (= id). A
// merge's priority is the rank of the merged bytes, as in tiktoken.
type bpe struct {
	ranks   *strTable // token bytes → id
	bytes   [][]byte  // id → token bytes
	lookups *int      // tests count rank lookups here; nil otherwise
}

// shortPiece is the length up to which the O(n²) scan beats the heap.
const shortPiece = 48

// encodePiece appends the ids of one pre-tokenized piece.
func (b *bpe) encodePiece(piece string, out []uint32) []uint32 {
	if id, ok := b.id(piece); ok {
		return append(out, id)
	}
	if len(piece) <= shortPiece {
		return b.mergeScan(piece, out)
	}
	return b.mergeHeap(piece, out)
}

const noRank = ^uint32(0)

func (b *bpe) rank(p string) uint32 {
	if b.lookups != nil {
		*b.lookups++
	}
	if r, ok := b.id(p); ok {
		return r
	}
	return noRank
}

// id returns the id of token bytes p.
func (b *bpe) id(p string) (uint32, bool) {
	v, ok := b.ranks.get(p)
	return uint32(v), ok
}

// mustID returns the id of bytes that a merge made, and so are a token.
func (b *bpe) mustID(p string) uint32 {
	v, _ := b.ranks.get(p)
	return uint32(v)
}

// mergeScan is tiktoken's byte_pair_merge: repeatedly merge the adjacent
// pair whose joined bytes have the lowest rank, the leftmost on ties. As in
// tiktoken, each part keeps the rank of joining it with the next, and a
// merge re-ranks only its two neighbours, so the O(n²) part is a scan over
// integers, with O(n) map lookups. It is also the reference the heap
// version is fuzzed against.
func (b *bpe) mergeScan(piece string, out []uint32) []uint32 {
	type part struct {
		start int
		rank  uint32 // rank of joining this part with the next
	}
	var buf [shortPiece + 1]part
	parts := buf[:0]
	if len(piece) > shortPiece {
		parts = make([]part, 0, len(piece)+1)
	}
	for i := 0; i < len(piece); i++ {
		r := noRank
		if i+2 <= len(piece) {
			r = b.rank(piece[i : i+2])
		}
		parts = append(parts, part{start: i, rank: r})
	}
	parts = append(parts, part{start: len(piece), rank: noRank}) // sentinel
	// rankAt ranks joining parts k and k+1 after a merge.
	rankAt := func(k int) uint32 {
		if k+3 >= len(parts) {
			return noRank
		}
		return b.rank(piece[parts[k].start:parts[k+3].start])
	}
	for len(parts) > 2 {
		best, at := noRank, -1
		for k := 0; k+1 < len(parts); k++ {
			if parts[k].rank < best {
				best, at = parts[k].rank, k
			}
		}
		if at < 0 {
			break
		}
		// Join parts at and at+1: their ranks change, the rest keep theirs.
		parts[at].rank = rankAt(at)
		if at > 0 {
			parts[at-1].rank = rankAt(at - 1)
		}
		parts = append(parts[:at+1], parts[at+2:]...)
	}
	for k := 0; k+1 < len(parts); k++ {
		out = append(out, b.mustID(piece[parts[k].start:parts[k+1].start]))
	}
	return out
}

// mergeHeap gives mergeScan's result in O(n log n): parts in a linked list,
// candidate pairs in a heap ordered by (rank, position), stale candidates
// recognised by the parts' versions and skipped.
func (b *bpe) mergeHeap(piece string, out []uint32) []uint32 {
	n := len(piece)
	end := make([]int, n) // part starting at i ends at end[i]
	next := make([]int, n)
	prev := make([]int, n)
	ver := make([]uint32, n)
	for i := range n {
		end[i], next[i], prev[i] = i+1, i+1, i-1
	}
	h := make(pairHeap, 0, n)
	for i := 0; i+1 < n; i++ {
		if rk := b.rank(piece[i : i+2]); rk != noRank {
			h = append(h, pair{rank: rk, left: i, right: i + 1})
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		p := heap.Pop(&h).(pair)
		l, r := p.left, p.right
		if ver[l] != p.lver || ver[r] != p.rver || next[l] != r || end[l] == 0 || end[r] == 0 {
			continue // a part changed since this candidate was made
		}
		// Merge r into l.
		end[l] = end[r]
		end[r] = 0 // dead
		next[l] = next[r]
		if next[l] < n {
			prev[next[l]] = l
		}
		ver[l]++
		if q := prev[l]; q >= 0 {
			// The old (q, l) candidate is stale by l's version; rank anew.
			if r2 := b.rank(piece[q:end[l]]); r2 != noRank {
				heap.Push(&h, pair{rank: r2, left: q, right: l, lver: ver[q], rver: ver[l]})
			}
		}
		if next[l] < n {
			r := next[l]
			if r2 := b.rank(piece[l:end[r]]); r2 != noRank {
				heap.Push(&h, pair{rank: r2, left: l, right: r, lver: ver[l], rver: ver[r]})
			}
		}
	}
	for i := 0; i < n; i = end[i] {
		out = append(out, b.mustID(piece[i:end[i]]))
	}
	return out
}

type pair struct {
	rank        uint32
	left, right int
	lver, rver  uint32
}

type pairHeap []pair

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].left < h[j].left
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pair)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
