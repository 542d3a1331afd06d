package ingest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest/corpusgen"
)

// smallCorpus writes one JSON-lines file of Go texts and returns its root.
func smallCorpus(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "corpus")
	if err := corpusgen.WriteJSONL(filepath.Join(root, "a.jsonl"), "text", goTexts(t, 120)); err != nil {
		t.Fatal(err)
	}
	return root
}

// snapshot maps every file under dir to its bytes.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
		return nil
	})
	return out
}

// unchanged fails unless every file of before is still there, byte for
// byte, and no file was added.
func unchanged(t *testing.T, dir string, before map[string][]byte) {
	t.Helper()
	after := snapshot(t, dir)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed or was removed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was added", p)
		}
	}
}

// TestOutDirOwnership: ingest writes only into an empty directory or one
// holding a document set of its own; a directory of other files or a set
// of another kind is refused, named, and left exactly as it was.
func TestOutDirOwnership(t *testing.T) {
	root := smallCorpus(t)
	cases := []struct {
		name    string
		files   map[string]string
		mention string
	}{
		{"foreign files", map[string]string{"docs-mine.arrow": "my own file", "notes.txt": "keep me"}, "docs-mine.arrow"},
		{"a token set", map[string]string{"manifest.json": `{"schema":"estkit.tokshards","version":2}`, "train-00000.arrow": "tokens"}, "token set"},
		{"a run", map[string]string{"config.json": "{}", "checkpoints/step-1/model.safetensors": "w"}, "training run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			for n, s := range c.files {
				write(t, filepath.Join(dir, n), []byte(s))
			}
			before := snapshot(t, dir)
			_, _, err := ingestDir(t, []string{root}, Options{OutDir: dir})
			if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("got %v, want ErrNotOwned naming %s and %q", err, dir, c.mention)
			}
			unchanged(t, dir, before)
		})
	}
}

// TestStaleOnlyWhatAManifestNamed: a new run into an own set deletes the
// old set's shards, never a file of the same pattern that no manifest of
// ours named.
func TestStaleOnlyWhatAManifestNamed(t *testing.T) {
	root := smallCorpus(t)
	m, dir := mustIngest(t, []string{root}, Options{})
	// a file the user put there after ingest: estkit never named it
	stranger := filepath.Join(dir, "docs-0123456789ab-00000.arrow")
	write(t, stranger, []byte("not estkit's"))
	m2, _ := mustIngest(t, []string{root}, Options{OutDir: dir, Dedup: true})
	if m2.Key == m.Key {
		t.Fatal("same key")
	}
	if b, err := os.ReadFile(stranger); err != nil || string(b) != "not estkit's" {
		t.Fatalf("a file no manifest named was deleted or changed: %v", err)
	}
	for _, f := range m.Outputs {
		if _, err := os.Stat(filepath.Join(dir, f.Name)); err == nil {
			t.Errorf("stale %s left", f.Name)
		}
	}
}

// TestReuseRechecksShards: a rerun does not trust a shard of the right
// size whose bytes changed: it rebuilds it.
func TestReuseRechecksShards(t *testing.T) {
	root := smallCorpus(t)
	m, dir := mustIngest(t, []string{root}, Options{})
	p := filepath.Join(dir, m.Outputs[0].Name)
	orig, _ := os.ReadFile(p)
	b := bytes.Clone(orig)
	b[len(b)/2] ^= 0x10
	write(t, p, b)
	res, _, err := ingestDir(t, []string{root}, Options{OutDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate {
		t.Fatal("a damaged shard was reported up to date")
	}
	if now, _ := os.ReadFile(p); !bytes.Equal(now, orig) {
		t.Fatal("the damaged shard was not rebuilt")
	}
}

// TestManifestValueEdits: a manifest edited into other valid JSON (an
// input's path, sha256 or format, a count, an output's row count) is an
// error naming the manifest.
func TestManifestValueEdits(t *testing.T) {
	root := smallCorpus(t)
	m, dir := mustIngest(t, []string{root}, Options{})
	mp := filepath.Join(dir, ManifestName)
	orig, _ := os.ReadFile(mp)
	in := m.Inputs[0]
	edits := map[string][2]string{
		"input path":   {`"path": "` + in.Path + `"`, `"path": "b.jsonl"`},
		"input sha256": {in.SHA256, strings.Repeat("0", 64)},
		"input format": {`"format": "jsonl"`, `"format": "text"`},
		"documents":    {`"documents": ` + itoa(m.Counts.Documents), `"documents": ` + itoa(m.Counts.Documents+1)},
		"rows":         {`"rows": ` + itoa(m.Outputs[0].Rows), `"rows": ` + itoa(m.Outputs[0].Rows-1)},
	}
	for name, e := range edits {
		t.Run(name, func(t *testing.T) {
			s := string(orig)
			if !strings.Contains(s, e[0]) {
				t.Fatalf("manifest lacks %q", e[0])
			}
			write(t, mp, []byte(strings.Replace(s, e[0], e[1], 1)))
			defer write(t, mp, orig)
			_, err := ReadManifest(dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), mp) {
				t.Fatalf("got %v, want ErrCorrupt naming %s", err, mp)
			}
		})
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestManifestWriteFailureLeavesNoOrphans: when the manifest cannot be
// written (here its temporary name is taken by a directory, as a full disk
// would fail it), the shards this run committed are removed and the older
// set stays intact and valid.
func TestManifestWriteFailureLeavesNoOrphans(t *testing.T) {
	root := smallCorpus(t)
	_, dir := mustIngest(t, []string{root}, Options{})
	before := snapshot(t, dir)
	block := filepath.Join(dir, ".tmp-"+ManifestName)
	write(t, filepath.Join(block, "x"), nil)
	_, _, err := ingestDir(t, []string{root}, Options{OutDir: dir, Dedup: true})
	if err == nil {
		t.Fatal("the manifest write did not fail")
	}
	os.RemoveAll(block)
	delete(before, filepath.Join(dir, ".lock"))
	after := snapshot(t, dir)
	delete(after, filepath.Join(dir, ".lock"))
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("left behind: %s", p)
		}
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatalf("the older set: %v", err)
	}
	allDocs(t, dir)
}
