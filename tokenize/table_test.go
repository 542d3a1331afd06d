package tokenize

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestKeyWords: the overlapping loads give the first 16 bytes of keys of
// every length, padded with zeros, reading only inside the key (each key is
// cut from a larger buffer of 0xff bytes, so a read past its end would
// show).
func TestKeyWords(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := []byte(strings.Repeat("\xff", 64))
	for n := 0; n <= 24; n++ {
		for range 100 {
			for i := range n {
				buf[8+i] = byte(r.IntN(255)) // never 0xff
			}
			s := string(buf[8 : 8+n])
			var want [16]byte
			copy(want[:], s)
			w0, w1 := keyWords(s)
			if g0, g1 := binary.LittleEndian.Uint64(want[:8]), binary.LittleEndian.Uint64(want[8:]); w0 != g0 || w1 != g1 {
				t.Fatalf("len %d %q: words %#x %#x, want %#x %#x", n, s, w0, w1, g0, g1)
			}
		}
	}
}

// TestStrTableMatchesMap: random puts, overwrites, gets of present and
// absent keys of every length (many longer than 16 bytes and alike in their
// first 16, as indented code is), growth and reset, against a Go map.
func TestStrTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	key := func() string {
		var b []byte
		switch r.IntN(4) {
		case 0: // short, so that words collide
			b = make([]byte, 1+r.IntN(3))
		case 1: // a long common prefix
			b = append([]byte(strings.Repeat("▁", 6)), make([]byte, r.IntN(6))...)
		default:
			b = make([]byte, 1+r.IntN(40))
		}
		for i := range b {
			if b[i] == 0 {
				b[i] = "ab\x00\xff"[r.IntN(4)]
			}
		}
		return string(b)
	}
	tab := newStrTable(4)
	want := map[string]uint64{}
	for round := range 3 {
		for i := range 20000 {
			k := key()
			if r.IntN(2) == 0 {
				v := r.Uint64()
				tab.put(k, v)
				want[k] = v
			}
			v, ok := tab.get(k)
			wv, wok := want[k]
			if ok != wok || v != wv {
				t.Fatalf("round %d step %d: get(%q) = %d, %v; want %d, %v", round, i, k, v, ok, wv, wok)
			}
		}
		if tab.len() != len(want) {
			t.Fatalf("round %d: len %d, want %d", round, tab.len(), len(want))
		}
		for k, wv := range want {
			if v, ok := tab.get(k); !ok || v != wv {
				t.Fatalf("round %d: get(%q) = %d, %v; want %d", round, k, v, ok, wv)
			}
		}
		tab.reset()
		clear(want)
		if tab.len() != 0 {
			t.Fatalf("len %d after reset", tab.len())
		}
	}
	if _, ok := tab.get(""); ok {
		t.Fatal("the empty string is found in an empty table")
	}
}

// TestPairTable: every pair put is found with its merge, and pairs not put
// (including the zero pair, whose key is the empty slot's but for the used
// bit) are not.
func TestPairTable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	want := map[[2]int32]spMerge{}
	for len(want) < 5000 {
		want[[2]int32{r.Int32N(300), r.Int32N(300)}] = spMerge{id: r.Uint32(), score: r.Float32()}
	}
	tab := newPairTable(len(want))
	for k, m := range want {
		tab.put(k[0], k[1], m)
	}
	for l := int32(0); l < 300; l++ {
		for rr := int32(0); rr < 300; rr++ {
			m, ok := tab.get(l, rr)
			wm, wok := want[[2]int32{l, rr}]
			if ok != wok || m != wm {
				t.Fatalf("get(%d, %d) = %v, %v; want %v, %v", l, rr, m, ok, wm, wok)
			}
		}
	}
}
