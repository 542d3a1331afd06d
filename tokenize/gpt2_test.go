package tokenize

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// refDir is where `make refs` writes the test corpus and the reference ids
// (ESTKIT_REFS). Plain `go test` without it skips the exactness tests and
// says so; `make test` sets ESTKIT_REQUIRE_REFS=1 so that a missing
// reference fails instead.
func refDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("ESTKIT_REFS")
	if d == "" {
		if os.Getenv("ESTKIT_REQUIRE_REFS") != "" {
			t.Fatal("ESTKIT_REFS is not set: the reference ids were not generated (make refs)")
		}
		t.Skip("reference ids not generated: run `make test`, which runs `make refs` (node and npm) and sets ESTKIT_REFS")
	}
	return d
}

type refDoc struct {
	ID   string   `json:"id"`
	Text string   `json:"text"`
	IDs  []uint32 `json:"ids"`
}

func readJSONL(t *testing.T, path string) []refDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []refDoc
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<28)
	for sc.Scan() {
		var d refDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return docs
}

// TestGPT2MatchesTiktoken compares every document of the reference corpus
// id by id with tiktoken's gpt2 encode_ordinary, and checks the round trip.
func TestGPT2MatchesTiktoken(t *testing.T) {
	compareWithReference(t, gpt2(t), "gpt2.jsonl", "tiktoken", compareOpts{roundTrip: true})
}

// TestLlama2MatchesSentencePiece compares every document id by id with C++
// SentencePiece's encode and Meta's Llama 2 tokenizer.model.
func TestLlama2MatchesSentencePiece(t *testing.T) {
	dir := refDir(t)
	tok, err := LoadSentencePiece(filepath.Join(dir, "llama2.model"))
	if err != nil {
		t.Fatal(err)
	}
	compareWithReference(t, tok, "llama2.jsonl", "SentencePiece", compareOpts{})
}

type compareOpts struct {
	special   bool // EncodeOptions.AllowedSpecial
	roundTrip bool // also check Decode(Encode(x)) == x
	// skip, when set, names why a document is not compared ("" compares
	// it); skipped documents are counted in the log.
	skip func(text string) string
}

func compareWithReference(t *testing.T, tok *Tokenizer, refName, refTool string, o compareOpts) {
	dir := refDir(t)
	corpus := readJSONL(t, filepath.Join(dir, "corpus.jsonl"))
	ref := readJSONL(t, filepath.Join(dir, refName))
	if len(corpus) != len(ref) || len(corpus) < 500 {
		t.Fatalf("corpus %d documents, reference %d", len(corpus), len(ref))
	}
	e := tok.NewEncoder()
	bad := 0
	var tokens int
	skipped := map[string]int{}
	for i, d := range corpus {
		if ref[i].ID != d.ID {
			t.Fatalf("reference line %d is %q, corpus %q", i, ref[i].ID, d.ID)
		}
		if o.skip != nil {
			if why := o.skip(d.Text); why != "" {
				skipped[why]++
				continue
			}
		}
		got, err := e.Encode(d.Text, EncodeOptions{AllowedSpecial: o.special}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tokens += len(got)
		if !slices.Equal(got, ref[i].IDs) {
			bad++
			if bad <= 5 {
				k := 0
				for k < len(got) && k < len(ref[i].IDs) && got[k] == ref[i].IDs[k] {
					k++
				}
				lo := max(0, k-3)
				t.Errorf("%s: first difference at token %d: got %v, %s %v", d.ID, k, got[lo:min(k+5, len(got))], refTool, ref[i].IDs[lo:min(k+5, len(ref[i].IDs))])
			}
		}
		if o.roundTrip {
			if back, _ := tok.Decode(got); string(back) != d.Text {
				t.Errorf("%s: decode(encode(x)) != x", d.ID)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d documents differ from %s", bad, len(corpus), refTool)
	}
	n := len(corpus)
	for why, k := range skipped {
		t.Logf("%d documents not compared: %s", k, why)
		n -= k
	}
	t.Logf("%d documents, %d tokens, identical to %s", n, tokens, refTool)
}

// TestLlama2DecodeMatchesSentencePiece compares Decode with C++
// SentencePiece's decode on seeded random id sequences that mix normal,
// byte, control and unknown pieces.
func TestLlama2DecodeMatchesSentencePiece(t *testing.T) {
	dir := refDir(t)
	tok, err := LoadSentencePiece(filepath.Join(dir, "llama2.model"))
	if err != nil {
		t.Fatal(err)
	}
	cases := readJSONL(t, filepath.Join(dir, "llama2-decode.jsonl"))
	if len(cases) < 1000 {
		t.Fatalf("%d decode cases", len(cases))
	}
	bad := 0
	for _, c := range cases {
		got, err := tok.Decode(c.IDs)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.Text {
			if bad++; bad <= 5 {
				t.Errorf("decode %v: got %q, SentencePiece %q", c.IDs, got, c.Text)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d decodes differ", bad, len(cases))
	}
}

// TestSpecialTokens: with AllowedSpecial, special-token text becomes its id
// wherever it occurs, and finding them costs a bounded number of searches
// per special token, not one per match (no quadratic scan).
func TestSpecialTokens(t *testing.T) {
	tok := llama2(t)
	ids, err := tok.Encode("a</s><s>b</s>", EncodeOptions{AllowedSpecial: true})
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := tok.Encode("a", EncodeOptions{})
	b, _ := tok.Encode("b", EncodeOptions{})
	want := append(append(append([]uint32{}, plain...), 2, 1), append(b, 2)...)
	if !slices.Equal(ids, want) {
		t.Fatalf("got %v, want %v", ids, want)
	}
	text := strings.Repeat("</s>", 20000)
	m := tok.newSpecialMatcher(text)
	matches := 0
	for from := 0; ; {
		at, _, n := m.next(from)
		if at < 0 {
			break
		}
		matches++
		from = at + n
	}
	if matches != 20000 || m.searches > matches+2*len(m.toks) {
		t.Fatalf("%d matches with %d searches", matches, m.searches)
	}
}
