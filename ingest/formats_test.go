package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest/corpusgen"
)

func fileSHA(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func meta(d *Document) map[string]string {
	m := map[string]string{}
	for _, kv := range d.Lineage.Meta {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestFormats builds a corpus in each real format and checks that every
// document comes back with its text and its lineage, under auto detection and
// under the explicit format.
func TestFormats(t *testing.T) {
	texts := goTexts(t, 60)
	type check func(t *testing.T, root string, docs []Document)
	cases := []struct {
		name   string
		format Format
		corpus string
		build  func(t *testing.T, root string)
		check  check
	}{
		{"owt-inner-xz", FormatOWT, "openwebtext", func(t *testing.T, root string) {
			if _, err := corpusgen.WriteOWT(root, texts, 25, false); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			for i, d := range docs {
				k := i/25 + 1
				wantFile := fmt.Sprintf("openwebtext/urlsf_subset00-%d_data.xz", k)
				if d.Lineage.File != wantFile || d.Lineage.Member != corpusgen.OWTMemberName(i, texts[i]) {
					t.Fatalf("doc %d: file %q member %q", i, d.Lineage.File, d.Lineage.Member)
				}
				if d.Lineage.FileSHA256 != fileSHA(t, filepath.Join(root, wantFile)) {
					t.Fatalf("doc %d: file sha256 differs", i)
				}
			}
		}},
		{"owt-outer-tar", FormatOWT, "openwebtext", func(t *testing.T, root string) {
			if _, err := corpusgen.WriteOWT(root, texts, 25, true); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			want := fmt.Sprintf("openwebtext/urlsf_subset00-2_data.xz/%s", corpusgen.OWTMemberName(30, texts[30]))
			if docs[30].Lineage.File != "urlsf_subset00.tar" || docs[30].Lineage.Member != want {
				t.Fatalf("doc 30: file %q member %q, want member %q", docs[30].Lineage.File, docs[30].Lineage.Member, want)
			}
		}},
		{"owt-tar-xz", FormatOWT, "openwebtext", func(t *testing.T, root string) {
			// openwebtext.tar.xz as first released: xz(tar(openwebtext/*.xz)).
			var ms []corpusgen.Member
			for k := 0; k*20 < len(texts); k++ {
				j := min(k*20+20, len(texts))
				ms = append(ms, corpusgen.Member{Name: fmt.Sprintf("openwebtext/urlsf_subset00-%d_data.xz", k+1), Body: corpusgen.OWTInner(texts[k*20:j], k*20)})
			}
			write(t, filepath.Join(root, "openwebtext.tar.xz"), corpusgen.XZ(corpusgen.Tar(ms)))
		}, func(t *testing.T, root string, docs []Document) {
			if docs[0].Lineage.File != "openwebtext.tar.xz" || !strings.HasPrefix(docs[0].Lineage.Member, "openwebtext/urlsf_subset00-1_data.xz/") {
				t.Fatalf("doc 0: %+v", docs[0].Lineage)
			}
		}},
		{"owt-parquet", FormatOWTParquet, "openwebtext", func(t *testing.T, root string) {
			if err := corpusgen.WriteTextParquet(filepath.Join(root, "data", "train-00000-of-00002.parquet"), "text", texts[:35], 16); err != nil {
				t.Fatal(err)
			}
			if err := corpusgen.WriteTextParquet(filepath.Join(root, "data", "train-00001-of-00002.parquet"), "text", texts[35:], 16); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			d := docs[20] // file 0, row group 1, row 4
			if d.Lineage.File != "data/train-00000-of-00002.parquet" || d.Lineage.RowGroup != 1 || d.Lineage.Row != 4 {
				t.Fatalf("doc 20: %+v", d.Lineage)
			}
			if d := docs[40]; d.Lineage.File != "data/train-00001-of-00002.parquet" || d.Lineage.RowGroup != 0 || d.Lineage.Row != 5 {
				t.Fatalf("doc 40: %+v", d.Lineage)
			}
		}},
		{"slimpajama", FormatSlimPajama, "slimpajama", func(t *testing.T, root string) {
			if err := corpusgen.WriteSlimPajama(filepath.Join(root, "train", "chunk1", "example_train_0.jsonl.zst"), texts); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			for i, d := range docs {
				if d.Lineage.Line != int64(i+1) || meta(&d)["redpajama_set_name"] != corpusgen.SetOf(i) || d.Lineage.File != "train/chunk1/example_train_0.jsonl.zst" {
					t.Fatalf("doc %d: %+v", i, d.Lineage)
				}
			}
			if docs[0].Lineage.Offset != 0 || docs[1].Lineage.Offset != int64(len(corpusgen.SlimPajamaLine(texts[0].Body, corpusgen.SetOf(0)))+1) {
				t.Fatalf("offsets: %d %d", docs[0].Lineage.Offset, docs[1].Lineage.Offset)
			}
		}},
		{"starcoder", FormatStarCoder, "starcoderdata", func(t *testing.T, root string) {
			rows := corpusgen.StarCoderRows(texts)
			if err := corpusgen.WriteStarCoder(filepath.Join(root, "go", "train-00000-of-00001.parquet"), rows[:30], 8); err != nil {
				t.Fatal(err)
			}
			if err := corpusgen.WriteStarCoder(filepath.Join(root, "python", "train-00000-of-00001.parquet"), rows[30:], 8); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			rows := corpusgen.StarCoderRows(texts)
			for i, d := range docs {
				m := meta(&d)
				lang := "go"
				if i >= 30 {
					lang = "python"
				}
				if m["lang"] != lang || m["max_stars_repo_name"] != rows[i].RepoName || m["max_stars_repo_path"] != rows[i].RepoPath ||
					m["id"] != rows[i].ID || m["max_stars_count"] != fmt.Sprint(rows[i].Stars) {
					t.Fatalf("doc %d: meta %v", i, m)
				}
				if d.Lineage.RowGroup != int32((i%30)/8) || d.Lineage.Row != int64((i%30)%8) {
					t.Fatalf("doc %d: row group %d row %d", i, d.Lineage.RowGroup, d.Lineage.Row)
				}
			}
		}},
		{"jsonl-gz-nested-field", FormatJSONL, "jsonl", func(t *testing.T, root string) {
			var b strings.Builder
			for i, x := range texts {
				fmt.Fprintf(&b, "{\"doc\": {\"body\": %q}, \"url\": \"u%d\"}\n", x.Body, i)
			}
			write(t, filepath.Join(root, "part-0.jsonl.gz"), corpusgen.Gzip([]byte(b.String())))
		}, func(t *testing.T, root string, docs []Document) {
			if m := meta(&docs[7]); m["url"] != "u7" {
				t.Fatalf("doc 7 meta %v", m)
			}
		}},
		{"jsonl-plain-and-zst", FormatJSONL, "jsonl", func(t *testing.T, root string) {
			if err := corpusgen.WriteJSONL(filepath.Join(root, "a.jsonl"), "text", texts[:30]); err != nil {
				t.Fatal(err)
			}
			if err := corpusgen.WriteJSONL(filepath.Join(root, "b.jsonl.zst"), "text", texts[30:]); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"parquet-generic", FormatParquet, "parquet", func(t *testing.T, root string) {
			if err := corpusgen.WriteTextParquet(filepath.Join(root, "docs.parquet"), "body", texts, 7); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"text-dir", FormatText, "text", func(t *testing.T, root string) {
			if err := corpusgen.WriteTextDir(root, texts); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, root string, docs []Document) {
			if docs[3].Lineage.File != "doc-00003.txt" {
				t.Fatalf("doc 3 file %q", docs[3].Lineage.File)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "in")
			c.build(t, root)
			for _, f := range []Format{FormatAuto, c.format} {
				t.Run(string(f), func(t *testing.T) {
					o := Options{Format: f}
					switch c.name {
					case "jsonl-gz-nested-field":
						o.TextField, o.MetaFields = "doc.body", []string{"url"}
					case "parquet-generic":
						o.TextColumn = "body"
					}
					m, dir := mustIngest(t, []string{root}, o)
					if m.Counts.Documents != int64(len(texts)) || m.Counts.Read != int64(len(texts)) {
						t.Fatalf("counts %+v, want %d documents", m.Counts, len(texts))
					}
					for _, in := range m.Inputs {
						if in.Format != c.format {
							t.Errorf("%s recognised as %s, want %s", in.Path, in.Format, c.format)
						}
					}
					docs := allDocs(t, dir)
					for i, d := range docs {
						if d.Text != texts[i].Body {
							t.Fatalf("doc %d text differs (%d bytes, want %d)", i, len(d.Text), len(texts[i].Body))
						}
						if d.Lineage.Corpus != c.corpus || d.Lineage.Bytes != int64(len(d.Text)) || d.Lineage.SHA256 != sha256.Sum256([]byte(d.Text)) {
							t.Fatalf("doc %d lineage %+v", i, d.Lineage)
						}
					}
					if c.check != nil {
						c.check(t, root, docs)
					}
					// inspect --doc reads the same document.
					k := int64(len(docs) / 2)
					d, err := ReadDocument(dir, m, k)
					if err != nil || d.Text != docs[k].Text || !slices.Equal(d.Lineage.Meta, docs[k].Lineage.Meta) {
						t.Fatalf("ReadDocument(%d): %v", k, err)
					}
				})
			}
		})
	}
}

func TestSlimPajamaSets(t *testing.T) {
	texts := goTexts(t, 70)
	root := filepath.Join(t.TempDir(), "in")
	if err := corpusgen.WriteSlimPajama(filepath.Join(root, "example_train_0.jsonl.zst"), texts); err != nil {
		t.Fatal(err)
	}
	m, dir := mustIngest(t, []string{root}, Options{ExcludeSets: []string{"RedPajamaGithub"}})
	if m.Counts.Filtered[FilterSet] != 10 || m.Counts.Documents != 60 {
		t.Fatalf("exclude: %+v", m.Counts)
	}
	for _, d := range allDocs(t, dir) {
		if meta(&d)["redpajama_set_name"] == "RedPajamaGithub" {
			t.Fatal("excluded set kept")
		}
	}
	m, _ = mustIngest(t, []string{root}, Options{IncludeSets: []string{"RedPajamaBook", "RedPajamaC4"}})
	if m.Counts.Filtered[FilterSet] != 50 || m.Counts.Documents != 20 {
		t.Fatalf("include: %+v", m.Counts)
	}
	if _, _, err := ingestDir(t, []string{root}, Options{IncludeSets: []string{"a"}, ExcludeSets: []string{"b"}}); err == nil {
		t.Fatal("include and exclude together accepted")
	}
}

func TestStarCoderLangs(t *testing.T) {
	texts := goTexts(t, 40)
	root := filepath.Join(t.TempDir(), "starcoderdata")
	rows := corpusgen.StarCoderRows(texts)
	for i, lang := range []string{"c", "go", "python", "rust"} {
		if err := corpusgen.WriteStarCoder(filepath.Join(root, lang, "train-00000-of-00001.parquet"), rows[i*10:i*10+10], 4); err != nil {
			t.Fatal(err)
		}
	}
	m, dir := mustIngest(t, []string{root}, Options{Format: FormatStarCoder, Langs: []string{"python", "go"}})
	if m.Counts.Documents != 20 || m.Counts.Filtered[FilterLang] != 20 {
		t.Fatalf("counts %+v", m.Counts)
	}
	for i, d := range allDocs(t, dir) {
		want := []string{"go", "python"}[i/10]
		if meta(&d)["lang"] != want || d.Text != texts[10+i].Body {
			t.Fatalf("doc %d: lang %q", i, meta(&d)["lang"])
		}
	}
}

func TestDedup(t *testing.T) {
	texts := goTexts(t, 20)
	root := filepath.Join(t.TempDir(), "in")
	dup := append(append([]corpusgen.Text{}, texts...), texts[3], texts[7], texts[3])
	if err := corpusgen.WriteJSONL(filepath.Join(root, "a.jsonl"), "text", dup); err != nil {
		t.Fatal(err)
	}
	if err := corpusgen.WriteJSONL(filepath.Join(root, "b.jsonl"), "text", texts[:5]); err != nil {
		t.Fatal(err)
	}
	m, _ := mustIngest(t, []string{root}, Options{})
	if m.Counts.Documents != 28 {
		t.Fatalf("without dedup: %+v", m.Counts)
	}
	m, dir := mustIngest(t, []string{root}, Options{Dedup: true})
	if m.Counts.Documents != 20 || m.Counts.Filtered[FilterDuplicate] != 8 {
		t.Fatalf("dedup: %+v", m.Counts)
	}
	docs := allDocs(t, dir)
	for i, d := range docs {
		if d.Text != texts[i].Body || d.Lineage.Line != int64(i+1) || d.Lineage.File != "a.jsonl" {
			t.Fatalf("doc %d: first occurrence not kept: %+v", i, d.Lineage)
		}
	}
}

func TestMixedRootsAndIgnored(t *testing.T) {
	texts := goTexts(t, 30)
	base := t.TempDir()
	slim := filepath.Join(base, "slim")
	code := filepath.Join(base, "code")
	if err := corpusgen.WriteSlimPajama(filepath.Join(slim, "train", "chunk1", "example_train_0.jsonl.zst"), texts[:10]); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(slim, "README.md"), []byte("# SlimPajama\n"))
	if err := corpusgen.WriteStarCoder(filepath.Join(code, "go", "train-00000-of-00001.parquet"), corpusgen.StarCoderRows(texts[10:]), 8); err != nil {
		t.Fatal(err)
	}
	m, dir := mustIngest(t, []string{slim, code}, Options{})
	if m.Corpora["slimpajama"].Documents != 10 || m.Corpora["starcoderdata"].Documents != 20 {
		t.Fatalf("corpora %+v %+v", m.Corpora["slimpajama"], m.Corpora["starcoderdata"])
	}
	if len(m.Ignored) != 1 || m.Ignored[0].Path != "README.md" {
		t.Fatalf("ignored %+v", m.Ignored)
	}
	if m.Inputs[1].Root != 1 || m.Inputs[1].Lang != "go" {
		t.Fatalf("inputs %+v", m.Inputs)
	}
	if docs := allDocs(t, dir); docs[0].Lineage.Corpus != "slimpajama" || docs[10].Lineage.Corpus != "starcoderdata" {
		t.Fatal("order of roots not kept")
	}
}

func TestSymlinksAndHidden(t *testing.T) {
	texts := goTexts(t, 10)
	base := t.TempDir()
	blobs := filepath.Join(base, "blobs")
	snap := filepath.Join(base, "snapshots", "main", "data")
	if err := corpusgen.WriteTextParquet(filepath.Join(blobs, "abc123"), "text", texts, 4); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(blobs, "abc123"), filepath.Join(snap, "train-00000-of-00001.parquet")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(blobs, filepath.Join(snap, "loop")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(snap, ".gitattributes"), []byte("*.parquet lfs\n"))
	m, _ := mustIngest(t, []string{snap}, Options{})
	if m.Counts.Documents != 10 || m.Inputs[0].Format != FormatOWTParquet {
		t.Fatalf("symlinked parquet: %+v %+v", m.Counts, m.Inputs)
	}
	reasons := map[string]string{}
	for _, ig := range m.Ignored {
		reasons[ig.Path] = ig.Reason
	}
	if reasons[".gitattributes"] != "hidden" || !strings.Contains(reasons["loop"], "symlink") {
		t.Fatalf("ignored %+v", m.Ignored)
	}
}
