package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest/corpusgen"
)

// hubRepo builds a Hugging Face hub cache repository folder under dir as
// huggingface_hub lays it out: file contents in blobs/ named by their
// sha256, snapshots/REV/... holding relative symlinks into blobs/, and
// refs/NAME files holding a commit hash. snaps maps a revision to its files.
func hubRepo(t *testing.T, dir string, snaps map[string]map[string]string, refs map[string]string) string {
	t.Helper()
	repo := filepath.Join(dir, "datasets--owner--name")
	for _, sub := range []string{"blobs", "refs", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(repo, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for rev, files := range snaps {
		for rel, body := range files {
			h := sha256.Sum256([]byte(body))
			blob := filepath.Join(repo, "blobs", hex.EncodeToString(h[:]))
			if err := os.WriteFile(blob, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(repo, "snapshots", rev, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			target, err := filepath.Rel(filepath.Dir(link), blob)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, rev := range refs {
		p := filepath.Join(repo, "refs", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rev), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return repo
}

func jsonlDocs(texts ...string) string {
	var b strings.Builder
	for _, s := range texts {
		fmt.Fprintf(&b, "{\"text\": %q}\n", s)
	}
	return b.String()
}

const (
	rev1 = "1111111111111111111111111111111111111111"
	rev2 = "2222222222222222222222222222222222222222"
)

// hubMeta are the files beside the data in a dataset repository's
// snapshot; none holds documents.
var hubMeta = map[string]string{
	"README.md":               "---\nlicense: mit\n---\n# a dataset\n",
	".gitattributes":          "*.arrow filter=lfs diff=lfs merge=lfs -text\n",
	"dataset_infos.json":      `{"default": {"description": "", "features": {"text": {"dtype": "string"}}}}`,
	"dataset_dict.json":       `{"splits": ["train", "test"]}`,
	"train/state.json":        `{"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": "train"}`,
	"train/dataset_info.json": `{"citation": "", "features": {"text": {"dtype": "string", "_type": "Value"}}}`,
}

func withMeta(files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range hubMeta {
		out[k] = v
	}
	for k, v := range files {
		out[k] = v
	}
	return out
}

// parquetDocs returns the bytes of a parquet file with a text column.
func parquetDocs(t *testing.T, texts ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.parquet")
	var ts []corpusgen.Text
	for _, s := range texts {
		ts = append(ts, corpusgen.Text{Name: "x", Body: s})
	}
	if err := corpusgen.WriteTextParquet(p, "text", ts, 100); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func docTexts(docs []Document) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d.Text)
	}
	return out
}

func ignoredReason(m *Manifest, p string) string {
	for _, ig := range m.Ignored {
		if ig.Path == p {
			return ig.Reason
		}
	}
	return ""
}

// TestHubCacheEachDocumentOnce: a dataset repository's hub cache folder is
// read through its snapshot only, each document once (it was read once
// under blobs/ and once under snapshots/, or refused as the same file
// twice), and the metadata files beside the data are listed as ignored
// rather than stopping detection with "missing text field".
func TestHubCacheEachDocumentOnce(t *testing.T) {
	dir := t.TempDir()
	repo := hubRepo(t, dir, map[string]map[string]string{
		rev1: withMeta(map[string]string{
			"data/train.jsonl":   jsonlDocs("one", "two", "three"),
			"data/test.jsonl":    jsonlDocs("four", "five"),
			"data/extra.parquet": parquetDocs(t, "six", "seven"),
		}),
	}, map[string]string{"main": rev1})
	m, out := mustIngest(t, []string{repo}, Options{})
	docs := allDocs(t, out)
	if got, want := strings.Join(docTexts(docs), ","), "six,seven,four,five,one,two,three"; got != want {
		t.Fatalf("documents %s, want %s (each once, in path order)", got, want)
	}
	var paths []string
	for _, in := range m.Inputs {
		paths = append(paths, in.Path)
	}
	if got, want := strings.Join(paths, ","), "data/extra.parquet,data/test.jsonl,data/train.jsonl"; got != want {
		t.Fatalf("inputs %s, want %s (relative to the snapshot)", got, want)
	}
	for _, d := range docs {
		if d.Lineage.Revision != rev1 {
			t.Fatalf("%s: revision %q in lineage, want %s", d.Lineage.File, d.Lineage.Revision, rev1)
		}
	}
	for _, in := range m.Inputs {
		if in.Revision != rev1 {
			t.Fatalf("manifest input %s: revision %q, want %s", in.Path, in.Revision, rev1)
		}
	}
	for _, p := range []string{"README.md", ".gitattributes", "dataset_infos.json", "dataset_dict.json", "train/state.json", "train/dataset_info.json", "blobs", "refs"} {
		if ignoredReason(m, p) == "" {
			t.Errorf("%s not listed as ignored; ignored: %+v", p, m.Ignored)
		}
	}
}

// TestHubCacheRevision: the snapshot read is the one --revision names (a
// ref, a commit or a unique prefix of one), else refs/main's, else the only
// one; several snapshots and no ref is refused naming them, as is a
// revision the repository does not hold.
func TestHubCacheRevision(t *testing.T) {
	snaps := map[string]map[string]string{
		rev1: {"data/train.jsonl": jsonlDocs("old")},
		rev2: {"data/train.jsonl": jsonlDocs("new")},
	}
	cases := []struct {
		name     string
		refs     map[string]string
		revision string
		want     string // the text read, or a substring of the error
		wantRev  string
	}{
		{"refs/main", map[string]string{"main": rev2 + "\n"}, "", "new", rev2},
		{"ref by name", map[string]string{"main": rev2, "v1.0": rev1}, "v1.0", "old", rev1},
		{"pull request ref", map[string]string{"main": rev2, "pr/3": rev1}, "pr/3", "old", rev1},
		{"commit", map[string]string{"main": rev2}, rev1, "old", rev1},
		{"commit prefix", map[string]string{"main": rev2}, rev1[:7], "old", rev1},
		{"no ref", nil, "", "2 snapshots and no refs/main: give --revision with one of " + rev1 + ", " + rev2, ""},
		{"unknown revision", map[string]string{"main": rev2}, "v9", `holds no ref or snapshot "v9" (refs: main; snapshots: ` + rev1 + ", " + rev2 + ")", ""},
		{"short prefix", map[string]string{"main": rev2}, "111", "--revision 111 is too short to name a commit", ""},
		{"ref outside refs", map[string]string{"main": rev2}, "../refs/main", `holds no ref or snapshot "../refs/main"`, ""},
		{"ref without snapshot", map[string]string{"main": "3333333333333333333333333333333333333333"}, "", "refs/main names commit 3333333333333333333333333333333333333333, which has no snapshot", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := hubRepo(t, t.TempDir(), snaps, c.refs)
			m, out, err := ingestDir(t, []string{repo}, Options{Revision: c.revision})
			if c.wantRev == "" {
				if err == nil || !errors.Is(err, ErrRevision) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), repo) {
					t.Fatalf("error %v, want ErrRevision naming %s and saying %q", err, repo, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			docs := allDocs(t, out)
			if len(docs) != 1 || docs[0].Text != c.want || docs[0].Lineage.Revision != c.wantRev {
				t.Fatalf("documents %+v, want %q from %s", docs, c.want, c.wantRev)
			}
			other := rev1
			if c.wantRev == rev1 {
				other = rev2
			}
			if r := ignoredReason(m.Manifest, "snapshots/"+other); !strings.Contains(r, "revision not read") {
				t.Fatalf("snapshots/%s ignored as %q, want a note that the revision is not read", other, r)
			}
		})
	}
}

// TestHubCacheInputs: the revision is recorded whether the INPUT is a
// folder holding hub cache repositories, the repository, its snapshots/
// folder, a snapshot or a file in one; --revision without a hub cache
// input, or disagreeing with the snapshot given, is refused.
func TestHubCacheInputs(t *testing.T) {
	dir := t.TempDir()
	repo := hubRepo(t, dir, map[string]map[string]string{
		rev1: {"data/train.jsonl": jsonlDocs("old")},
		rev2: {"data/train.jsonl": jsonlDocs("new")},
	}, map[string]string{"main": rev2})
	snap := filepath.Join(repo, "snapshots", rev1)
	cases := []struct {
		name, root, revision, file, text, rev string
	}{
		{"hub folder", dir, "", "datasets--owner--name/data/train.jsonl", "new", rev2},
		{"repository", repo, "", "data/train.jsonl", "new", rev2},
		{"snapshots folder", filepath.Join(repo, "snapshots"), rev1, "data/train.jsonl", "old", rev1},
		{"snapshot", snap, "", "data/train.jsonl", "old", rev1},
		{"snapshot and its revision", snap, rev1[:8], "data/train.jsonl", "old", rev1},
		{"file in a snapshot", filepath.Join(snap, "data", "train.jsonl"), "", "train.jsonl", "old", rev1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, out := mustIngest(t, []string{c.root}, Options{Revision: c.revision})
			docs := allDocs(t, out)
			if len(docs) != 1 || docs[0].Text != c.text || docs[0].Lineage.Revision != c.rev || docs[0].Lineage.File != c.file {
				t.Fatalf("documents %+v, want %q of %s from %s", docs, c.text, c.file, c.rev)
			}
		})
	}
	t.Run("snapshot and another revision", func(t *testing.T) {
		_, _, err := ingestDir(t, []string{snap}, Options{Revision: "main"})
		if !errors.Is(err, ErrRevision) || !strings.Contains(err.Error(), "lies in snapshot "+rev1) {
			t.Fatalf("error %v, want a refusal: the snapshot given is not --revision's", err)
		}
	})
	t.Run("revision without a hub cache", func(t *testing.T) {
		plain := write(t, filepath.Join(t.TempDir(), "a.jsonl"), []byte(jsonlDocs("x")))
		_, _, err := ingestDir(t, []string{plain}, Options{Revision: "main"})
		if err == nil || !strings.Contains(err.Error(), "--revision given, but no input is a Hugging Face hub cache repository") {
			t.Fatalf("error %v, want a refusal of --revision", err)
		}
	})
}

// TestHubLocalDir: a folder that huggingface-cli download --local-dir
// wrote is read without its .cache/huggingface bookkeeping, which is listed
// as ignored with its reason, and so are the dataset's metadata files.
func TestHubLocalDir(t *testing.T) {
	dir := t.TempDir()
	for rel, body := range withMeta(map[string]string{
		"data/train.jsonl": jsonlDocs("one", "two"),
		".cache/huggingface/download/data/train.jsonl.metadata": rev1 + "\n\"etag\"\n1700000000.0\n",
		".cache/huggingface/.gitignore":                         "*\n",
	}) {
		write(t, filepath.Join(dir, filepath.FromSlash(rel)), []byte(body))
	}
	m, out := mustIngest(t, []string{dir}, Options{})
	if got := strings.Join(docTexts(allDocs(t, out)), ","); got != "one,two" {
		t.Fatalf("documents %s, want one,two", got)
	}
	if r := ignoredReason(m, ".cache"); !strings.Contains(r, "--local-dir metadata") {
		t.Fatalf(".cache ignored as %q", r)
	}
	for _, p := range []string{"dataset_infos.json", "train/dataset_info.json", "train/state.json", "dataset_dict.json", "README.md"} {
		if r := ignoredReason(m, p); !strings.Contains(r, "Hugging Face dataset metadata") {
			t.Errorf("%s ignored as %q, want a dataset metadata note", p, r)
		}
	}
}

// TestHubCacheRevisionPrefix: a --revision that begins two snapshots'
// commits is called ambiguous, naming them, and a prefix of a commit
// shorter than 7 hex digits is called too short, not "no such revision".
func TestHubCacheRevisionPrefix(t *testing.T) {
	a, b := "abcdef1"+strings.Repeat("0", 33), "abcdef1"+strings.Repeat("9", 33)
	snaps := map[string]map[string]string{a: {"d.jsonl": jsonlDocs("a")}, b: {"d.jsonl": jsonlDocs("b")}}
	for _, c := range []struct{ revision, want string }{
		{"abcdef1", "--revision abcdef1 is ambiguous: it begins the commits of 2 snapshots (" + a + ", " + b + "): give more of the commit"},
		{"abcd", "--revision abcd is too short to name a commit: give at least 7 hex digits (it begins " + a + ", " + b + ")"},
		{"ABCDEF1", "--revision ABCDEF1 is ambiguous"},
	} {
		repo := hubRepo(t, t.TempDir(), snaps, nil)
		_, _, err := ingestDir(t, []string{repo}, Options{Revision: c.revision})
		if err == nil || !errors.Is(err, ErrRevision) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--revision %s: %v, want %q", c.revision, err, c.want)
		}
	}
}
