package ingest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var diffPaths = jsonPaths{{"text"}, {"meta", "redpajama_set_name"}, {"a", "b"}}

// checkAgainstStdlib compares scanJSONLine with encoding/json on one line:
// the same lines accepted, and at every path the same value.
func checkAgainstStdlib(t *testing.T, line []byte) {
	t.Helper()
	found := make([]span, len(diffPaths))
	err := scanJSONLine(line, diffPaths, found)
	var ref any
	refErr := json.Unmarshal(line, &ref)
	obj, isObj := ref.(map[string]any)
	switch {
	case refErr != nil && err == nil:
		t.Fatalf("accepted what encoding/json rejects (%v): %q", refErr, line)
	case refErr == nil && !isObj:
		if !errors.Is(err, errNotObject) {
			t.Fatalf("non-object %q: got %v", line, err)
		}
		return
	case refErr == nil && err != nil:
		t.Fatalf("rejected what encoding/json accepts (%v): %q", err, line)
	case refErr != nil:
		return
	}
	for k, p := range diffPaths {
		var want any = obj
		ok := true
		for _, key := range p {
			m, isMap := want.(map[string]any)
			if !isMap {
				ok = false
				break
			}
			want, ok = m[key]
			if !ok {
				break
			}
		}
		sp := found[k]
		if sp.found != ok {
			t.Fatalf("path %v: found %v, encoding/json %v, in %q", p, sp.found, ok, line)
		}
		if !ok {
			continue
		}
		ws, wantString := want.(string)
		if sp.isString != wantString {
			t.Fatalf("path %v: string %v vs %v in %q", p, sp.isString, wantString, line)
		}
		if wantString {
			if got := decodeJSONString(line[sp.start:sp.end]); got != ws {
				t.Fatalf("path %v: decoded %q, encoding/json %q", p, got, ws)
			}
			continue
		}
		var v any
		if err := json.Unmarshal(line[sp.start:sp.end], &v); err != nil || !reflect.DeepEqual(v, want) {
			t.Fatalf("path %v: raw %q is not the value encoding/json found (%v)", p, line[sp.start:sp.end], err)
		}
	}
}

func TestJSONLineAgainstStdlib(t *testing.T) {
	cases := []string{
		`{"text": "plain"}`,
		`{"text": "esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00"}`,
		`{"text": "lone \ud800 surrogate", "meta": {"redpajama_set_name": "RedPajamaC4"}}`,
		`{"text": "lone low \udc00 then \ud800\u0041"}`,
		`{"Text": "case differs"}`,
		`{"text": "first", "text": "last wins"}`,
		`{"meta": {"redpajama_set_name": "A"}, "meta": {"other": 1}, "text": "x"}`,
		`{"text": 5, "a": {"b": [1, {"c": null}], "b": true}}`,
		`{"te\u0078t": "escaped key"}`,
		`{"text": null}`,
		`[1, 2]`, `null`, `"str"`, `{}`, ` { } `, `{"text": "x"} trailing`, `{"text": "x",}`,
		`{"text": "unterminated`, `{"text": "\x"}`, `{"text": "\u12G4"}`, "{\"text\": \"tab\tinside\"}",
		`{"n": -0.5e+10, "m": 01}`, `{"n": 1.}`, `{"n": -}`, `{"n": 1e}`, `{"x": tru}`, `{"x": nul}`,
		`{"a": {"b": "nested"}, "text": ""}`, `{"a": "not an object", "text": "t"}`,
		"\ufeff{\"text\": \"bom\"}",
	}
	for _, c := range cases {
		checkAgainstStdlib(t, []byte(c))
	}
	deep := func(n int) string {
		return `{"x": ` + strings.Repeat("[", n) + strings.Repeat("]", n) + `, "text": "t"}`
	}
	for _, n := range []int{maxJSONDepth - 2, maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1} {
		checkAgainstStdlib(t, []byte(deep(n)))
	}
}

// FuzzJSONLineDiff is a differential fuzz of scanJSONLine against
// encoding/json.
func FuzzJSONLineDiff(f *testing.F) {
	f.Add([]byte(`{"text": "a\u00e9\ud83d\ude00", "meta": {"redpajama_set_name": "RedPajamaBook"}, "a": {"b": 1.5e3}}`))
	f.Add([]byte(`{"text": "x", "text": 1, "a": {"b": "y"}, "a": 2}`))
	f.Add([]byte(`[{"text": "not top"}]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if !utf8.Valid(line) {
			return // the caller checks UTF-8 first
		}
		checkAgainstStdlib(t, line)
	})
}
