package tokenize

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func gpt2(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// FuzzGPT2RoundTrip: decode(encode(x)) == x for any input, and the split
// covers the input with non-empty pieces, the same as the simple split's.
func FuzzGPT2RoundTrip(f *testing.F) {
	for _, s := range []string{"Hello world's  \u0085x\ufeffy", "  a\n\n b", strings.Repeat("9", 100), "caf\xe9 \xff", "'S'll 'LL", "\r\n\t \u3000x", "a\u00e9b  \u2003\u0085 x1\u0663 ..\u00bf", "x  1  .\t;\n\n("} {
		f.Add(s)
	}
	tok := gpt2(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s, EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		back, err := tok.Decode(ids)
		if err != nil || string(back) != s {
			t.Fatalf("decode(encode(%q)) = %q (%v)", s, back, err)
		}
		var joined strings.Builder
		for i := 0; i < len(s); {
			n := gpt2Piece(s, i)
			if n <= 0 {
				t.Fatalf("empty piece at %d of %q", i, s)
			}
			if want := gpt2PieceSimple(s, i); n != want {
				t.Fatalf("piece at %d of %q: %d bytes, the simple split says %d", i, s, n, want)
			}
			joined.WriteString(s[i : i+n])
			i += n
		}
		if joined.String() != s {
			t.Fatalf("pieces do not cover %q", s)
		}
	})
}

// gpt2PieceSimple is gpt2Piece without its ASCII fast paths: every
// character through classAt.
func gpt2PieceSimple(s string, i int) int {
	if n := gpt2Contraction(s, i); n > 0 {
		return n
	}
	j := i
	if s[j] == ' ' {
		j++
	}
	if j < len(s) {
		if cl, n := classAt(s, j); cl != classSpace {
			k := j + n
			for k < len(s) {
				c2, n2 := classAt(s, k)
				if c2 != cl {
					break
				}
				k += n2
			}
			return k - i
		}
	}
	k, last := i, i
	for k < len(s) {
		cl, n := classAt(s, k)
		if cl != classSpace {
			break
		}
		last = k
		k += n
	}
	if k < len(s) && last > i {
		return last - i
	}
	return k - i
}

// FuzzMergeDiff: the heap merge gives exactly the ids of tiktoken's scan.
func FuzzMergeDiff(f *testing.F) {
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	f.Add([]byte(strings.Repeat("1234567890", 20)))
	f.Add([]byte(" internationalization antidisestablishmentarianism"))
	f.Add(bytes.Repeat([]byte{0xe4, 0xb8, 0x80}, 30))
	tok := gpt2(f)
	f.Fuzz(func(t *testing.T, piece []byte) {
		if len(piece) == 0 || len(piece) > 4096 {
			return
		}
		want := tok.bpe.mergeScan(string(piece), nil)
		got := tok.bpe.mergeHeap(string(piece), nil)
		if !slices.Equal(got, want) {
			t.Fatalf("%q: heap %v, scan %v", piece, got, want)
		}
	})
}

func TestMergeHeapMatchesScanOnCorpusPieces(t *testing.T) {
	tok := gpt2(t)
	// Long pieces that GPT-2's split produces: digit runs, letter runs,
	// punctuation runs, mixed scripts.
	pieces := []string{
		strings.Repeat("1234567890", 300), strings.Repeat("abcdefghij", 300), " " + strings.Repeat("ab", 700),
		strings.Repeat("é", 500), strings.Repeat("!?", 300), strings.Repeat("\u4e00\u4e8c\u4e09", 100),
		"pneumonoultramicroscopicsilicovolcanoconiosis" + strings.Repeat("s", 60),
	}
	for _, p := range pieces {
		if got, want := tok.bpe.mergeHeap(p, nil), tok.bpe.mergeScan(p, nil); !slices.Equal(got, want) {
			t.Fatalf("%.20q...: heap and scan differ", p)
		}
	}
}

// TestLongPiecesNotQuadratic counts merge work, not time: doubling a
// 50,000-digit number or a 20,000-letter word must about double the rank
// lookups (n log n), where tiktoken's scan would quadruple them.
func TestLongPiecesNotQuadratic(t *testing.T) {
	tok := gpt2(t)
	checkLinear(t, []string{"7", "a", "ab"}, 25000, func(s string) int {
		b := *tok.bpe
		calls := 0
		b.lookups = &calls
		b.encodePiece(s, nil)
		return calls
	})
}

// checkLinear fails when doubling n more than about doubles the work that
// count reports for strings of n units.
func checkLinear(t *testing.T, units []string, n int, count func(string) int) {
	t.Helper()
	for _, unit := range units {
		a, c := count(strings.Repeat(unit, n)), count(strings.Repeat(unit, 2*n))
		if ratio := float64(c) / float64(a); ratio > 2.5 {
			t.Errorf("%q×n: doubling n multiplied lookups by %.2f (%d → %d)", unit, ratio, a, c)
		}
	}
}

// llama2 loads the reference model when make refs has fetched it.
func llama2(t testing.TB) *Tokenizer {
	t.Helper()
	d := os.Getenv("ESTKIT_REFS")
	if d == "" {
		t.Skip("ESTKIT_REFS not set: make refs fetches the Llama 2 model")
	}
	tok, err := LoadSentencePiece(filepath.Join(d, "llama2.model"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// FuzzSentencePieceSegments: encoding segment by segment (with the cache)
// gives exactly the ids of running the merges over the whole text, which is
// what SentencePiece does.
func FuzzSentencePieceSegments(f *testing.F) {
	for _, s := range []string{"Hello  world", "  indented\n    code()", "▁▁x ▁y", "a\u00a0b c\td", "日本語 のテキスト", "x    y", "{this.a_=b;if(this.c)this.d_();},get", "tr.v.H('',tr.b.U.byName.t,Math.ceil(x.length))));h.s"} {
		f.Add(s)
	}
	tok := llama2(f)
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || len(s) > 2000 {
			return
		}
		got, _ := tok.Encode(s, EncodeOptions{})
		want := tok.sp.encodeSegment(tok.sp.normalize(s), nil)
		if s == "" {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: segments %v, whole %v", s, got, want)
		}
	})
}

// FuzzSentencePieceModel: the model reader never panics, and a model it
// accepts encodes text.
func FuzzSentencePieceModel(f *testing.F) {
	if d := os.Getenv("ESTKIT_REFS"); d != "" {
		if b, err := os.ReadFile(filepath.Join(d, "llama2.model")); err == nil {
			f.Add(b[:4096])
		}
	}
	f.Add([]byte{0x0a, 0x0b, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x15, 0, 0, 0, 0, 0x18, 0x02})
	f.Add([]byte{0x12, 0x02, 0x18, 0x02, 0x1a, 0x03, 0x0a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseSPModel(b)
		if err != nil {
			if !errors.Is(err, ErrModel) {
				t.Fatalf("error %v is not ErrModel", err)
			}
			return
		}
		if sp, err := newSPBPE(m); err == nil {
			tok := &Tokenizer{sp: sp, vocab: len(m.pieces)}
			tok.Encode("hello world ▁x", EncodeOptions{})
		}
	})
}

// TestSentencePieceNotQuadratic counts merge work on a long word and a long
// digit run: doubling the length must about double the piece lookups.
func TestSentencePieceNotQuadratic(t *testing.T) {
	tok := llama2(t)
	checkLinear(t, []string{"7", "a", "ab", "▁"}, 10000, func(s string) int {
		sp := *tok.sp
		calls := 0
		sp.lookups = &calls
		sp.encodeSegment(s, nil)
		return calls
	})
}
