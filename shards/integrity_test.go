package shards

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest"
)

// flipOffsets returns n offsets spread over a file of size bytes.
func flipOffsets(size int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) * (size - 1) / int64(n-1)
	}
	return out
}

// withFlip flips one bit at off of the file at p for the duration of fn.
func withFlip(t *testing.T, p string, off int64, fn func()) {
	t.Helper()
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(orig)
	b[off] ^= 1 << (off % 8)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}()
	fn()
}

// TestOpenTokenShardBitFlips: a token shard with one bit flipped anywhere
// (16 offsets spread over the file, the token data included) fails Open as
// training calls it, naming the file, before any batch is read.
func TestOpenTokenShardBitFlips(t *testing.T) {
	docs := docSet(t, "go", 3, 256<<10)
	res := build(t, []string{docs}, Options{})
	f := res.Manifest.Splits[Train].Files[0]
	p := filepath.Join(res.Dir, f.Name)
	if s, err := Open(res.Dir, false); err != nil { // the first open verifies and records it
		t.Fatal(err)
	} else {
		s.Close()
	}
	for _, off := range flipOffsets(f.Size, 16) {
		withFlip(t, p, off, func() {
			s, err := Open(res.Dir, false)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Errorf("bit flipped at %d of %d: got %v, want ErrCorrupt naming %s", off, f.Size, err, p)
			}
		})
	}
}

// TestVerifiedOnce: the first open verifies every file in full and says
// so; a second open of unchanged files does not; a file whose size, mtime
// or inode changed is verified again.
func TestVerifiedOnce(t *testing.T) {
	docs := docSet(t, "go", 4, 256<<10)
	res := build(t, []string{docs}, Options{})
	var log bytes.Buffer
	open := func() error {
		log.Reset()
		s, err := OpenWith(res.Dir, OpenOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err == nil {
			s.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "verifying") {
		t.Fatalf("first open did not say it verifies:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(res.Dir, VerifiedName)); err != nil {
		t.Fatalf("no marker: %v", err)
	}
	if err := open(); err != nil || strings.Contains(log.String(), "verifying") {
		t.Fatalf("second open verified again (%v):\n%s", err, log.String())
	}
	// a copy of the file in place (new inode, same bytes): verified again
	p := filepath.Join(res.Dir, res.Manifest.Splits[Train].Files[0].Name)
	b, _ := os.ReadFile(p)
	os.Remove(p)
	os.WriteFile(p, b, 0o644)
	if err := open(); err != nil || !strings.Contains(log.String(), "verifying") {
		t.Fatalf("a replaced file was not verified again (%v):\n%s", err, log.String())
	}
}

// TestBuildReuseRechecks: rerunning shard over a set whose file was
// damaged does not reuse it: the set is rebuilt, byte for byte.
func TestBuildReuseRechecks(t *testing.T) {
	docs := docSet(t, "go", 5, 256<<10)
	res := build(t, []string{docs}, Options{})
	p := filepath.Join(res.Dir, res.Manifest.Splits[Train].Files[0].Name)
	orig, _ := os.ReadFile(p)
	b := bytes.Clone(orig)
	b[len(b)/2] ^= 4
	os.WriteFile(p, b, 0o644)
	again := build(t, []string{docs}, Options{OutDir: res.Dir})
	if again.Reused {
		t.Fatal("a damaged set was reused")
	}
	if now, _ := os.ReadFile(p); !bytes.Equal(now, orig) {
		t.Fatal("the damaged file was not rebuilt")
	}
}

// TestBuildRefusals: options and outputs that make no sense are errors,
// never panics, and touch nothing.
func TestBuildRefusals(t *testing.T) {
	docs := docSet(t, "go", 6, 64<<10)
	other := docSet(t, "go", 9, 64<<10)
	tokSet := build(t, []string{docs}, Options{}).Dir
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "train-00000.arrow"), []byte("mine"), 0o644)
	cases := []struct {
		name    string
		dirs    []string
		o       Options
		mention string
	}{
		{"same input twice", []string{docs, docs}, Options{}, "given twice"},
		{"output is an input", []string{docs}, Options{OutDir: docs}, "is also an input"},
		{"output is another document set", []string{docs}, Options{OutDir: other}, "document set"},
		{"output holds foreign files", []string{docs}, Options{OutDir: foreign}, "train-00000.arrow"},
		{"val fraction NaN", []string{docs}, Options{ValFraction: math.NaN()}, "val fraction"},
		{"val fraction +Inf", []string{docs}, Options{ValFraction: math.Inf(1)}, "val fraction"},
		{"val fraction -0.5", []string{docs}, Options{ValFraction: -0.5}, "val fraction"},
		{"val fraction 1", []string{docs}, Options{ValFraction: 1}, "val fraction"},
		{"shard tokens negative", []string{docs}, Options{ShardTokens: -3}, "shard tokens"},
		{"workers negative", []string{docs}, Options{Workers: -1}, "workers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.o.OutDir == "" {
				c.o.OutDir = filepath.Join(t.TempDir(), "tok")
			}
			before := map[string][]byte{}
			for _, d := range []string{docs, other, tokSet, foreign} {
				for n, b := range readAll(t, d) {
					before[d+"/"+n] = b
				}
				m, _ := os.ReadFile(filepath.Join(d, ManifestName))
				before[d+"/m"] = m
			}
			_, err := Build(context.Background(), gpt2(t), c.dirs, c.o)
			if err == nil || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.mention)
			}
			for _, d := range []string{docs, other, tokSet, foreign} {
				for n, b := range readAll(t, d) {
					if !bytes.Equal(before[d+"/"+n], b) {
						t.Errorf("%s/%s changed", d, n)
					}
				}
				if m, _ := os.ReadFile(filepath.Join(d, ManifestName)); !bytes.Equal(m, before[d+"/m"]) {
					t.Errorf("%s's manifest changed", d)
				}
			}
		})
	}
}

// TestTokenManifestValueEdits: a token set's manifest edited into other
// valid JSON (a tally, a file's sha256, a source's rows) is an error
// naming the manifest.
func TestTokenManifestValueEdits(t *testing.T) {
	docs := docSet(t, "go", 8, 128<<10)
	res := build(t, []string{docs}, Options{})
	mp := filepath.Join(res.Dir, ManifestName)
	orig, _ := os.ReadFile(mp)
	var tally string
	for c, n := range res.Manifest.Splits[Train].Corpora {
		tally = `"` + c + `": {` + "\n" + `          "documents": ` + itoa(n.Documents)
		break
	}
	edits := map[string][2]string{
		"corpus tally": {tally, strings.Replace(tally, itoa(res.Manifest.Splits[Train].Corpora["go"].Documents), itoa(res.Manifest.Splits[Train].Corpora["go"].Documents+1), 1)},
		"file sha256":  {res.Manifest.Splits[Train].Files[0].SHA256, strings.Repeat("1", 64)},
		"source rows":  {`"rows": ` + itoa(res.Manifest.Sources[0].Rows), `"rows": ` + itoa(res.Manifest.Sources[0].Rows+5)},
		"val seed":     {`"val_seed": 0`, `"val_seed": 1`},
	}
	for name, e := range edits {
		t.Run(name, func(t *testing.T) {
			s := string(orig)
			if !strings.Contains(s, e[0]) {
				t.Fatalf("manifest lacks %q", e[0])
			}
			os.WriteFile(mp, []byte(strings.Replace(s, e[0], e[1], 1)), 0o644)
			defer os.WriteFile(mp, orig, 0o644)
			_, err := ReadManifest(res.Dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), mp) {
				t.Fatalf("got %v, want ErrCorrupt naming %s", err, mp)
			}
		})
	}
}

// TestManifestBitFlips: one bit flipped at 16 offsets of a token set's
// manifest, and of its input document set's manifest, is an error naming
// the manifest, from Open and from Build.
func TestManifestBitFlips(t *testing.T) {
	docs := docSet(t, "go", 10, 128<<10)
	res := build(t, []string{docs}, Options{})
	tp := filepath.Join(res.Dir, ManifestName)
	st, _ := os.Stat(tp)
	for _, off := range flipOffsets(st.Size(), 16) {
		withFlip(t, tp, off, func() {
			s, err := Open(res.Dir, false)
			if err == nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tp) {
				t.Errorf("token manifest, bit at %d: got %v, want an error naming %s", off, err, tp)
			}
		})
	}
	dp := filepath.Join(docs, ingest.ManifestName)
	st, _ = os.Stat(dp)
	for _, off := range flipOffsets(st.Size(), 16) {
		withFlip(t, dp, off, func() {
			_, err := Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: filepath.Join(t.TempDir(), "tok")})
			if err == nil || !strings.Contains(err.Error(), dp) {
				t.Errorf("document manifest, bit at %d: got %v, want an error naming %s", off, err, dp)
			}
		})
	}
}

// TestDocShardBitFlips: a document shard with one bit flipped at 16
// offsets fails shard with an error naming the file.
func TestDocShardBitFlips(t *testing.T) {
	docs := docSet(t, "go", 12, 128<<10)
	m, err := ingest.ReadManifest(docs)
	if err != nil {
		t.Fatal(err)
	}
	f := m.Outputs[0]
	p := filepath.Join(docs, f.Name)
	for _, off := range flipOffsets(f.Size, 16) {
		withFlip(t, p, off, func() {
			_, err := Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: filepath.Join(t.TempDir(), "tok")})
			if !errors.Is(err, ingest.ErrCorrupt) || !strings.Contains(err.Error(), p) {
				t.Errorf("bit at %d: got %v, want ingest.ErrCorrupt naming %s", off, err, p)
			}
		})
	}
}

// TestBuildManifestWriteFailure: a manifest that cannot be written (its
// temporary name taken, as a full disk fails it) leaves no token file of
// this run and no temporary behind.
func TestBuildManifestWriteFailure(t *testing.T) {
	docs := docSet(t, "go", 14, 128<<10)
	out := filepath.Join(t.TempDir(), "tok")
	os.MkdirAll(filepath.Join(out, ".tmp-"+ManifestName, "x"), 0o755)
	_, err := Build(context.Background(), gpt2(t), []string{docs}, Options{OutDir: out, ValFraction: 0.05})
	if err == nil {
		t.Fatal("the manifest write did not fail")
	}
	os.RemoveAll(filepath.Join(out, ".tmp-"+ManifestName))
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".arrow") || strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestVerifiedUnrecordable: where the marker cannot be written (a
// read-only directory; here its name is taken by a directory, as tests run
// as root ignore permissions) every open verifies in full and says why.
func TestVerifiedUnrecordable(t *testing.T) {
	docs := docSet(t, "go", 15, 64<<10)
	res := build(t, []string{docs}, Options{})
	if err := os.MkdirAll(filepath.Join(res.Dir, VerifiedName, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		var log bytes.Buffer
		s, err := OpenWith(res.Dir, OpenOptions{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !strings.Contains(log.String(), "verifying") || !strings.Contains(log.String(), "every open of it verifies") {
			t.Fatalf("open %d:\n%s", i, log.String())
		}
	}
}
