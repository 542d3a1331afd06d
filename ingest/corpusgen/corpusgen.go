// Package corpusgen writes small corpora in the real on-disk formats of
// OpenWebText, SlimPajama, StarCoderData and the generic formats, from text
// every machine with Go has: the Go toolchain's own sources and docs. Tests,
// benchmarks and `estkit samples` use it, so that no third-party corpus text
// is ever committed and nothing is downloaded.
//
// Every writer is deterministic: the same texts give the same bytes.
package corpusgen

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// GoRoot returns the Go toolchain's root: $GOROOT, else `go env GOROOT`.
func GoRoot() (string, error) {
	if r := os.Getenv("GOROOT"); r != "" {
		return r, nil
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("corpusgen: go env GOROOT: %w (set GOROOT)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Text is one source document.
type Text struct {
	Name string // path relative to GOROOT, slash-separated
	Body string
}

// GoRootTexts returns up to maxBytes of text from GOROOT's src and doc trees
// (Go sources, Markdown, HTML and plain text), in sorted path order, skipping
// testdata, empty files and anything that is not valid UTF-8.
func GoRootTexts(maxBytes int64) ([]Text, error) {
	root, err := GoRoot()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, sub := range []string{"doc", "src"} {
		err := filepath.WalkDir(filepath.Join(root, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable parts of GOROOT are skipped
			}
			if d.IsDir() {
				if d.Name() == "testdata" || d.Name() == "vendor" {
					return filepath.SkipDir
				}
				return nil
			}
			switch filepath.Ext(p) {
			case ".go", ".md", ".html", ".txt", ".s":
				paths = append(paths, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(paths)
	var out []Text
	var total int64
	for _, p := range paths {
		if total >= maxBytes {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 || !utf8.Valid(b) {
			continue
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, Text{Name: filepath.ToSlash(rel), Body: string(b)})
		total += int64(len(b))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("corpusgen: no text under %s", root)
	}
	return out, nil
}

// Repeat returns texts repeated until they hold at least n bytes; copies get
// a numbered name and a numbered first line so that each is a distinct
// document.
func Repeat(texts []Text, n int64) []Text {
	var out []Text
	var total int64
	for round := 0; total < n; round++ {
		for _, t := range texts {
			if total >= n {
				break
			}
			if round > 0 {
				t = Text{Name: fmt.Sprintf("%s.%d", t.Name, round), Body: fmt.Sprintf("// copy %d\n%s", round, t.Body)}
			}
			out = append(out, t)
			total += int64(len(t.Body))
		}
	}
	return out
}

// RedPajamaSets are SlimPajama's redpajama_set_name values.
var RedPajamaSets = []string{"RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaGithub", "RedPajamaBook", "RedPajamaArXiv", "RedPajamaWikipedia", "RedPajamaStackExchange"}

// SetOf is the set name WriteSlimPajama gives document i.
func SetOf(i int) string { return RedPajamaSets[i%len(RedPajamaSets)] }

// SlimPajamaLine renders one SlimPajama line (without the newline).
func SlimPajamaLine(text, set string) []byte {
	b, _ := json.Marshal(map[string]any{"text": text, "meta": map[string]string{"redpajama_set_name": set}})
	return b
}

// WriteSlimPajama writes texts as a SlimPajama chunk file
// (example_train_K.jsonl.zst), cycling the set names.
func WriteSlimPajama(path string, texts []Text) error {
	var raw bytes.Buffer
	for i, t := range texts {
		raw.Write(SlimPajamaLine(t.Body, SetOf(i)))
		raw.WriteByte('\n')
	}
	return WriteFile(path, Zstd(raw.Bytes()))
}

// WriteJSONL writes texts as JSON lines {"id": name, field: body},
// compressed by the path's suffix (.zst, .gz or none).
func WriteJSONL(path, field string, texts []Text) error {
	var raw bytes.Buffer
	for _, t := range texts {
		b, _ := json.Marshal(map[string]any{"id": t.Name, field: t.Body})
		raw.Write(b)
		raw.WriteByte('\n')
	}
	data := raw.Bytes()
	switch {
	case strings.HasSuffix(path, ".zst"):
		data = Zstd(data)
	case strings.HasSuffix(path, ".gz"):
		data = Gzip(data)
	}
	return WriteFile(path, data)
}

// Zstd compresses b as one zstd frame.
func Zstd(b []byte) []byte {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// XZ compresses b.
func XZ(b []byte) []byte {
	var buf bytes.Buffer
	// xz's default 8 MiB dictionary, or less for small inputs, which gives
	// the same stream layout at a fraction of the memory.
	dict := min(8<<20, max(64<<10, len(b)))
	w, err := xz.WriterConfig{DictCap: dict}.NewWriter(&buf)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// Member is a tar member.
type Member struct {
	Name string
	Body []byte
}

// Tar builds a tar archive of members with fixed metadata.
func Tar(members []Member) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		tw.WriteHeader(&tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Body)), ModTime: time.Unix(1e9, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		tw.Write(m.Body)
	}
	tw.Close()
	return buf.Bytes()
}

// OWTMemberName is the member name OpenWebText would give document i.
func OWTMemberName(i int, t Text) string {
	h := md5.Sum([]byte(t.Name)) // OpenWebText names members by an md5 of the URL
	return fmt.Sprintf("%07d-%x.txt", i, h)
}

// OWTInner builds one urlsf_subsetNN-M_data.xz: an xz-compressed tar of
// one .txt member per text.
func OWTInner(texts []Text, first int) []byte {
	ms := make([]Member, len(texts))
	for i, t := range texts {
		ms[i] = Member{Name: OWTMemberName(first+i, t), Body: []byte(t.Body)}
	}
	return XZ(Tar(ms))
}

// WriteOWT writes texts as OpenWebText's release: dir/openwebtext/
// urlsf_subset00-K_data.xz files of perFile documents each. With outer set
// it writes instead one outer tar dir/urlsf_subset00.tar of those files
// (the later Hugging Face layout). It returns the paths written.
func WriteOWT(dir string, texts []Text, perFile int, outer bool) ([]string, error) {
	var members []Member
	for k, i := 0, 0; i < len(texts); k, i = k+1, i+perFile {
		j := min(i+perFile, len(texts))
		members = append(members, Member{Name: fmt.Sprintf("openwebtext/urlsf_subset00-%d_data.xz", k+1), Body: OWTInner(texts[i:j], i)})
	}
	if outer {
		p := filepath.Join(dir, "urlsf_subset00.tar")
		return []string{p}, WriteFile(p, Tar(members))
	}
	var paths []string
	for _, m := range members {
		p := filepath.Join(dir, filepath.FromSlash(m.Name))
		if err := WriteFile(p, m.Body); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// WriteTextDir writes one .txt file per text under dir.
func WriteTextDir(dir string, texts []Text) error {
	for i, t := range texts {
		if err := WriteFile(filepath.Join(dir, fmt.Sprintf("doc-%05d.txt", i)), []byte(t.Body)); err != nil {
			return err
		}
	}
	return nil
}

// StarCoderRow is one row of a StarCoderData parquet file.
type StarCoderRow struct {
	Content, RepoPath, RepoName, ID string
	Stars                           int64
}

// StarCoderRows turns texts into StarCoderData rows.
func StarCoderRows(texts []Text) []StarCoderRow {
	rows := make([]StarCoderRow, len(texts))
	for i, t := range texts {
		dir, file := "go", t.Name
		if j := strings.Index(t.Name, "/"); j >= 0 {
			dir, file = t.Name[:j], t.Name[j+1:]
		}
		rows[i] = StarCoderRow{Content: t.Body, RepoPath: file, RepoName: "golang/" + dir, ID: fmt.Sprintf("%d", i), Stars: int64(i % 1000)}
	}
	return rows
}

var starCoderSchema = arrow.NewSchema([]arrow.Field{
	{Name: "max_stars_repo_path", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "max_stars_repo_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "max_stars_count", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "id", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "content", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// WriteStarCoder writes rows as a StarCoderData parquet file with row
// groups of rowGroup rows.
func WriteStarCoder(path string, rows []StarCoderRow, rowGroup int) error {
	mem := memory.NewGoAllocator()
	b := array.NewRecordBuilder(mem, starCoderSchema)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.StringBuilder).Append(r.RepoPath)
		b.Field(1).(*array.StringBuilder).Append(r.RepoName)
		b.Field(2).(*array.Int64Builder).Append(r.Stars)
		b.Field(3).(*array.StringBuilder).Append(r.ID)
		b.Field(4).(*array.StringBuilder).Append(r.Content)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return writeParquet(path, rec, rowGroup)
}

// WriteTextParquet writes texts as a parquet file with one string column.
func WriteTextParquet(path, column string, texts []Text, rowGroup int) error {
	mem := memory.NewGoAllocator()
	sc := arrow.NewSchema([]arrow.Field{{Name: column, Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	for _, t := range texts {
		b.Field(0).(*array.StringBuilder).Append(t.Body)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	return writeParquet(path, rec, rowGroup)
}

func writeParquet(path string, rec arrow.RecordBatch, rowGroup int) error {
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(int64(rowGroup)),
		parquet.WithCreatedBy("estkit corpusgen"))
	w, err := pqarrow.NewFileWriter(rec.Schema(), &buf, props, pqarrow.DefaultWriterProps())
	if err != nil {
		return err
	}
	for off := int64(0); off < rec.NumRows(); off += int64(rowGroup) {
		end := min(off+int64(rowGroup), rec.NumRows())
		s := rec.NewSlice(off, end)
		err := w.Write(s)
		s.Release()
		if err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return WriteFile(path, buf.Bytes())
}

// WriteFile writes data to path, creating its directory.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Copy copies a file.
func Copy(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// WriteSamples writes a small sample of every supported format under dir,
// from up to maxBytes of GOROOT text, and returns the directory of each
// format by format name.
func WriteSamples(dir string, maxBytes int64) (map[string]string, error) {
	texts, err := GoRootTexts(maxBytes)
	if err != nil {
		return nil, err
	}
	part := func(k, n int) []Text { // the k-th of n parts
		a, b := len(texts)*k/n, len(texts)*(k+1)/n
		return texts[a:b]
	}
	out := map[string]string{}
	if _, err := WriteOWT(dir, part(0, 4), 50, false); err != nil {
		return nil, err
	}
	out["owt"] = filepath.Join(dir, "openwebtext")
	d := filepath.Join(dir, "slimpajama", "train", "chunk1")
	if err := WriteSlimPajama(filepath.Join(d, "example_train_0.jsonl.zst"), part(1, 4)); err != nil {
		return nil, err
	}
	out["slimpajama"] = filepath.Join(dir, "slimpajama")
	d = filepath.Join(dir, "starcoderdata")
	sc := part(2, 4)
	if err := WriteStarCoder(filepath.Join(d, "go", "train-00000-of-00001.parquet"), StarCoderRows(sc[:len(sc)/2]), 64); err != nil {
		return nil, err
	}
	if err := WriteStarCoder(filepath.Join(d, "markdown", "train-00000-of-00001.parquet"), StarCoderRows(sc[len(sc)/2:]), 64); err != nil {
		return nil, err
	}
	out["starcoder"] = d
	d = filepath.Join(dir, "owt-parquet", "data")
	if err := WriteTextParquet(filepath.Join(d, "train-00000-of-00001.parquet"), "text", part(3, 4), 128); err != nil {
		return nil, err
	}
	out["owt-parquet"] = d
	return out, nil
}
