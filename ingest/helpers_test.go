package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/estkit/estkit/ingest/corpusgen"
)

// goTexts returns n GOROOT texts of at most maxLen bytes each, shared by
// all tests.
func goTexts(t testing.TB, n int) []corpusgen.Text {
	t.Helper()
	textsOnce.Do(func() {
		all, err := corpusgen.GoRootTexts(16 << 20)
		if err != nil {
			textsErr = err
			return
		}
		for _, x := range all {
			if len(x.Body) <= 64<<10 {
				textsAll = append(textsAll, x)
			}
		}
	})
	if textsErr != nil {
		t.Fatal(textsErr)
	}
	if n > len(textsAll) {
		t.Fatalf("want %d texts, GOROOT gave %d", n, len(textsAll))
	}
	return textsAll[:n]
}

var (
	textsOnce sync.Once
	textsAll  []corpusgen.Text
	textsErr  error
)

// ingestDir runs Run into a fresh directory and checks the count invariant.
func ingestDir(t *testing.T, roots []string, o Options) (*Result, string, error) {
	t.Helper()
	if o.OutDir == "" {
		o.OutDir = filepath.Join(t.TempDir(), "out")
	}
	res, err := Run(context.Background(), roots, o)
	if err == nil {
		checkCounts(t, res.Manifest)
	}
	return res, o.OutDir, err
}

func mustIngest(t *testing.T, roots []string, o Options) (*Manifest, string) {
	t.Helper()
	res, dir, err := ingestDir(t, roots, o)
	if err != nil {
		t.Fatal(err)
	}
	return res.Manifest, dir
}

// checkCounts checks read = documents + filtered + rejected, overall and per
// corpus, and that the outputs hold the documents counted.
func checkCounts(t *testing.T, m *Manifest) {
	t.Helper()
	check := func(name string, c *Counts) {
		if got := c.Documents + sum(c.Filtered) + sum(c.Rejected); got != c.Read {
			t.Errorf("%s: read %d != documents %d + filtered %v + rejected %v", name, c.Read, c.Documents, c.Filtered, c.Rejected)
		}
	}
	check("total", &m.Counts)
	var docs int64
	for n, c := range m.Corpora {
		check(n, c)
		docs += c.Documents
	}
	if docs != m.Counts.Documents {
		t.Errorf("corpora documents %d != total %d", docs, m.Counts.Documents)
	}
	var rows, text int64
	for _, o := range m.Outputs {
		rows += o.Rows
		text += o.TextBytes
	}
	if rows != m.Counts.Documents || text != m.Counts.TextBytes {
		t.Errorf("outputs hold %d rows, %d bytes; counts say %d, %d", rows, text, m.Counts.Documents, m.Counts.TextBytes)
	}
}

// allDocs reads every document of a shard directory in order.
func allDocs(t *testing.T, dir string) []Document {
	t.Helper()
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []Document
	for _, o := range m.Outputs {
		p := filepath.Join(dir, o.Name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != o.SHA256 || int64(len(b)) != o.Size {
			t.Fatalf("%s: size or sha256 differs from the manifest", o.Name)
		}
		err = ScanShard(p, func(rec arrow.RecordBatch) (bool, error) {
			for i := 0; i < int(rec.NumRows()); i++ {
				docs = append(docs, DocumentAt(rec, i))
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return docs
}

// readAll runs one input's reader with its units inline: the fuzz targets'
// and unit tests' view of a reader without the pipeline around it.
func readAll(in *Input, o *Options) (docs []Document, rejects []*InputError, read int64, err error) {
	docs, rejects, read, _, err = readAllCounted(in, o)
	return docs, rejects, read, err
}

// readAllCounted is readAll that also returns the number filtered.
func readAllCounted(in *Input, o *Options) (docs []Document, rejects []*InputError, read, filtered int64, err error) {
	if err := o.resolve(); err != nil {
		return nil, nil, 0, 0, err
	}
	var n atomic.Int64
	err = readInput(context.Background(), in, o, &n, func(u unit) error {
		res := runUnit(job{u: u, file: in.Rel})
		docs = append(docs, res.docs...)
		rejects = append(rejects, res.rejects...)
		read += res.read
		filtered += sum(res.filtered)
		return nil
	})
	return docs, rejects, read, filtered, err
}

// inputFor describes a file for readAll.
func inputFor(t testing.TB, path string, f Format) *Input {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	h := sha256.Sum256(b)
	return &Input{Root: filepath.Dir(path), Path: path, Rel: filepath.Base(path), Size: st.Size(), ModTime: st.ModTime(), SHA256: hex.EncodeToString(h[:]),
		Format: f, Corpus: string(f), Lang: filepath.Base(filepath.Dir(path))}
}

func write(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := corpusgen.WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
	return path
}

// firstInputError returns err's *InputError or fails.
func firstInputError(t *testing.T, err error) *InputError {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v is not an *InputError", err)
	}
	return ie
}

func lines(parts ...[]byte) []byte { return bytes.Join(parts, []byte("\n")) }
