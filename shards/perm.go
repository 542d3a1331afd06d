package shards

import "math/bits"

// perm is a seeded pseudo-random permutation of [0, n) computed one index
// at a time, so that a shuffle of billions of windows needs no memory and
// any position of it is reachable at once (exact resume without replay): a
// balanced Feistel network on the smallest even number of bits that covers
// n, cycle-walked back into [0, n) (fewer than 4 steps on average).
type perm struct {
	n    uint64
	half uint // bits per Feistel half
	keys [6]uint64
}

func newPerm(n uint64, seed, stream, epoch uint64) perm {
	p := perm{n: n}
	width := uint(bits.Len64(max(n-1, 1)))
	p.half = (width + 1) / 2
	s := mix(mix(seed^0x9e3779b97f4a7c15) ^ mix(stream+0x632be59bd9b4e019) ^ mix(epoch+0x85157af5d9b4e01f))
	for i := range p.keys {
		s = mix(s + uint64(i) + 1)
		p.keys[i] = s
	}
	return p
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// at returns the permuted position of i (i < n).
func (p perm) at(i uint64) uint64 {
	mask := uint64(1)<<p.half - 1
	for {
		l, r := i>>p.half, i&mask
		for _, k := range p.keys {
			l, r = r, l^(mix(r^k)&mask)
		}
		i = l<<p.half | r
		if i < p.n {
			return i
		}
	}
}
