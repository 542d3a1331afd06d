package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPartMergeCLI: ingest and shard with --part 0/2 and 1/2, then merge,
// give the keys of single runs; a --part that does not parse is a usage
// error (exit status 2).
func TestPartMergeCLI(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "1000000")
	key := func(args ...string) string {
		t.Helper()
		out, errs, code := run(t, append([]string{"-q", "--json"}, args...)...)
		var res struct {
			Key      string `json:"key"`
			Manifest struct {
				Key string `json:"key"`
			} `json:"manifest"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Key+res.Manifest.Key) != 64 {
			t.Fatalf("%s: %d %s %s", strings.Join(args, " "), code, out, errs)
		}
		return res.Key + res.Manifest.Key
	}
	single := key("inspect", docs)
	p0, p1 := filepath.Join(dir, "docs.part0"), filepath.Join(dir, "docs.part1")
	key("ingest", "--part", "0/2", "--out", p0, samples)
	key("ingest", "--part", "1/2", "--out", p1, samples)
	if got := key("merge", filepath.Join(dir, "merged"), p1, p0); got != single {
		t.Fatalf("merged document set key %s, a single run's %s", got, single)
	}
	tok := key("shard", "--out", filepath.Join(dir, "tok"), docs)
	t0, t1 := filepath.Join(dir, "tok.part0"), filepath.Join(dir, "tok.part1")
	key("shard", "--part", "0/2", "--out", t0, docs)
	key("shard", "--part", "1/2", "--out", t1, docs)
	if got := key("merge", filepath.Join(dir, "tokmerged"), t0, t1); got != tok {
		t.Fatalf("merged token set key %s, a single run's %s", got, tok)
	}
	for _, bad := range []string{"2/2", "x", "1/0"} {
		if _, errs, code := run(t, "ingest", "--part", bad, "--out", filepath.Join(dir, "bad"), samples); code != 2 || !strings.Contains(errs, "--part") {
			t.Fatalf("--part %s: exit %d %s", bad, code, errs)
		}
	}
}

// TestMergeNamesPartCLI: merge with a part missing or given twice names
// that part by its index, for document and token sets alike.
func TestMergeNamesPartCLI(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "300000")
	parts := map[string][2]string{}
	for _, kind := range []string{"ingest", "shard"} {
		in := samples
		if kind == "shard" {
			in = docs
		}
		var p [2]string
		for i := range p {
			p[i] = filepath.Join(dir, kind+".part"+string(rune('0'+i)))
			if _, errs, code := run(t, "-q", kind, "--part", string(rune('0'+i))+"/2", "--out", p[i], in); code != 0 {
				t.Fatalf("%s part %d: %s", kind, i, errs)
			}
		}
		parts[kind] = p
	}
	for kind, p := range parts {
		for _, c := range []struct {
			parts []string
			want  string
		}{
			{[]string{p[0]}, "part 1 of 2 is missing"},
			{[]string{p[1]}, "part 0 of 2 is missing"},
			{[]string{p[0], p[0]}, "part 0 of 2 is given twice"},
			{[]string{p[1], p[0], p[1]}, "part 1 of 2 is given twice"},
		} {
			_, errs, code := run(t, append([]string{"merge", filepath.Join(dir, "out-"+kind)}, c.parts...)...)
			if code == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("%s merge %v: exit %d, %q; want %q", kind, c.parts, code, errs, c.want)
			}
		}
	}
}

// TestPartOverAnotherPart: `--part i/N --out D` where D holds another part
// of a split (or a whole set), or a whole run into a part's directory, is
// refused naming both, and D is left as it was: the usual slip of a job
// array whose --out did not take the index. Rebuilding the same part into
// its own directory goes on as before.
func TestPartOverAnotherPart(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "300000")
	for _, kind := range []string{"ingest", "shard"} {
		in := samples
		if kind == "shard" {
			in = docs
		}
		d := filepath.Join(dir, kind+"-p")
		if _, errs, code := run(t, "-q", kind, "--part", "0/2", "--out", d, in); code != 0 {
			t.Fatalf("%s: %s", kind, errs)
		}
		m0, _ := os.ReadFile(filepath.Join(d, "manifest.json"))
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--part", "1/2"}, "part 0/2"},
			{[]string{"--part", "0/3"}, "part 0/2"},
			{nil, "part 0/2"},
		} {
			args := append(append([]string{"-q", kind}, c.args...), "--out", d, in)
			_, errs, code := run(t, args...)
			if code == 0 || !strings.Contains(errs, c.want) || !strings.Contains(errs, d) {
				t.Errorf("%v: exit %d, %q (want a refusal naming %s and %q)", args, code, errs, d, c.want)
			}
		}
		if m1, _ := os.ReadFile(filepath.Join(d, "manifest.json")); string(m1) != string(m0) {
			t.Errorf("%s: a refused part changed the set there", kind)
		}
		if _, errs, code := run(t, "-q", kind, "--part", "0/2", "--out", d, in); code != 0 {
			t.Errorf("%s: the same part again: %s", kind, errs)
		}
		whole := filepath.Join(dir, kind+"-whole")
		if _, errs, code := run(t, "-q", kind, "--out", whole, in); code != 0 {
			t.Fatalf("%s whole: %s", kind, errs)
		}
		if _, errs, code := run(t, "-q", kind, "--part", "1/2", "--out", whole, in); code == 0 || !strings.Contains(errs, "whole set") {
			t.Errorf("%s: a part over a whole set: exit %d, %q", kind, code, errs)
		}
	}
}
