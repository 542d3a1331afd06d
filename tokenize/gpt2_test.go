package tokenize

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
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
	compareWithReference(t, gpt2(t), "gpt2.jsonl", "tiktoken", true)
}

// TestLlama2MatchesSentencePiece compares every document id by id with C++
// SentencePiece's encode and Meta's Llama 2 tokenizer.model.
func TestLlama2MatchesSentencePiece(t *testing.T) {
	dir := refDir(t)
	tok, err := LoadSentencePiece(filepath.Join(dir, "llama2.model"))
	if err != nil {
		t.Fatal(err)
	}
	compareWithReference(t, tok, "llama2.jsonl", "SentencePiece", false)
}

func compareWithReference(t *testing.T, tok *Tokenizer, refName, refTool string, roundTrip bool) {
	dir := refDir(t)
	corpus := readJSONL(t, filepath.Join(dir, "corpus.jsonl"))
	ref := readJSONL(t, filepath.Join(dir, refName))
	if len(corpus) != len(ref) || len(corpus) < 500 {
		t.Fatalf("corpus %d documents, reference %d", len(corpus), len(ref))
	}
	e := tok.NewEncoder()
	bad := 0
	var tokens int
	for i, d := range corpus {
		if ref[i].ID != d.ID {
			t.Fatalf("reference line %d is %q, corpus %q", i, ref[i].ID, d.ID)
		}
		got, err := e.Encode(d.Text, EncodeOptions{}, nil)
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
		if roundTrip {
			if back, _ := tok.Decode(got); string(back) != d.Text {
				t.Errorf("%s: decode(encode(x)) != x", d.ID)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d documents differ from %s", bad, len(corpus), refTool)
	}
	t.Logf("%d documents, %d tokens, identical to %s", len(corpus), tokens, refTool)
}
