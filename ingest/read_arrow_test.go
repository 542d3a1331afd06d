package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// arrowFixture returns the bytes of an Arrow IPC stream (or file) with a
// text column of type textType, an int64 id column and a string source
// column, one record batch per element of batches; a nil text is null.
func arrowFixture(t testing.TB, file bool, textType arrow.DataType, batches [][]*string, opts ...ipc.Option) []byte {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "text", Type: textType, Nullable: true},
		{Name: "source", Type: arrow.BinaryTypes.String},
	}, nil)
	var buf bytes.Buffer
	opts = append(opts, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	var w interface {
		Write(arrow.RecordBatch) error
		Close() error
	}
	if file {
		fw, err := ipc.NewFileWriter(&buf, opts...)
		if err != nil {
			t.Fatal(err)
		}
		w = fw
	} else {
		w = ipc.NewWriter(&buf, opts...)
	}
	id := int64(0)
	for _, texts := range batches {
		b := array.NewRecordBuilder(mem, schema)
		for _, s := range texts {
			b.Field(0).(*array.Int64Builder).Append(id)
			id++
			tb := b.Field(1)
			switch {
			case s == nil:
				tb.AppendNull()
			case textType.ID() == arrow.LARGE_STRING:
				tb.(*array.LargeStringBuilder).Append(*s)
			default:
				tb.(*array.StringBuilder).Append(*s)
			}
			b.Field(2).(*array.StringBuilder).Append(fmt.Sprintf("src-%d", id-1))
		}
		rec := b.NewRecordBatch()
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		b.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func strs(ss ...string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

// TestArrowFormats: the datasets library's Arrow cache and save_to_disk
// files (IPC stream) and Arrow IPC files, with string or large_string text,
// are recognised by their magic and read with lineage (file, record batch,
// row) and --meta-field values.
func TestArrowFormats(t *testing.T) {
	batches := [][]*string{strs("alpha", "beta"), strs("gamma"), strs("delta", "epsilon", "zeta")}
	cases := []struct {
		name     string
		file     bool
		textType arrow.DataType
		fname    string
		opts     []ipc.Option
	}{
		{"stream", false, arrow.BinaryTypes.String, "data-00000-of-00001.arrow", nil},
		{"stream large_string", false, arrow.BinaryTypes.LargeString, "data-00000-of-00001.arrow", nil},
		{"stream without a known name", false, arrow.BinaryTypes.String, "cache-1a2b3c", nil},
		{"file", true, arrow.BinaryTypes.String, "train.arrow", nil},
		{"file large_string zstd", true, arrow.BinaryTypes.LargeString, "train.feather", []ipc.Option{ipc.WithZstd()}},
		{"file lz4", true, arrow.BinaryTypes.String, "train.arrow", []ipc.Option{ipc.WithLZ4()}},
	}
	for _, c := range cases {
		for _, format := range []Format{FormatAuto, FormatArrow} {
			t.Run(c.name+"/"+string(format), func(t *testing.T) {
				dir := t.TempDir()
				write(t, filepath.Join(dir, "train", c.fname), arrowFixture(t, c.file, c.textType, batches, c.opts...))
				write(t, filepath.Join(dir, "train", "state.json"), []byte(`{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}`))
				m, out := mustIngest(t, []string{dir}, Options{Format: format, MetaFields: []string{"source"}})
				if len(m.Inputs) != 1 || m.Inputs[0].Format != FormatArrow || m.Inputs[0].Corpus != "arrow" {
					t.Fatalf("inputs %+v", m.Inputs)
				}
				docs := allDocs(t, out)
				if got := strings.Join(docTexts(docs), ","); got != "alpha,beta,gamma,delta,epsilon,zeta" {
					t.Fatalf("documents %s", got)
				}
				d := docs[4] // epsilon: batch 2, row 1
				l := d.Lineage
				if l.File != "train/"+c.fname || l.Batch != 2 || l.Row != 1 || l.RowGroup != -1 || l.Line != 0 ||
					len(l.Meta) != 1 || l.Meta[0] != (KV{"source", "src-4"}) {
					t.Fatalf("lineage %+v, want train/%s record batch 2 row 1 source src-4", l, c.fname)
				}
				if l.Position() != "record batch 2 row 1" {
					t.Fatalf("position %q", l.Position())
				}
			})
		}
	}
}

// replaceOnce replaces the only occurrence of old in b, failing otherwise.
func replaceOnce(t *testing.T, b, old, new []byte) []byte {
	t.Helper()
	if n := bytes.Count(b, old); n != 1 {
		t.Fatalf("%x occurs %d times, want once", old, n)
	}
	return bytes.Replace(bytes.Clone(b), old, new, 1)
}

func le64(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

// TestArrowDamaged: a damaged Arrow file or stream is an error naming the
// file and the record batch (ErrCorrupt), never a panic or an allocation
// of what the damage claims; a missing or non-string text column is
// ErrMissingField naming the columns; null text is a rejection.
func TestArrowDamaged(t *testing.T) {
	long := strings.Repeat("x", 777) // compresses; its length occurs once, as a buffer's uncompressed size
	good := arrowFixture(t, false, arrow.BinaryTypes.String, [][]*string{strs("alpha", "beta"), strs("gamma")})
	file := arrowFixture(t, true, arrow.BinaryTypes.String, [][]*string{strs("alpha", "beta"), strs("gamma")})
	// The second batch's body is 8-aligned buffers: 3 ids, offsets, "gamma", offsets, "src-2".
	cases := []struct {
		name  string
		data  func(t *testing.T) []byte
		want  error
		say   string // in the error
		shown string // the position
	}{
		{"stream cut in batch 1", func(t *testing.T) []byte { return good[:len(good)-40] }, ErrCorrupt, "arrow", "record batch 1"},
		{"stream without its end-of-stream marker", func(t *testing.T) []byte { return good[:len(good)-8] }, ErrCorrupt, "end-of-stream", "byte"},
		{"file without footer", func(t *testing.T) []byte { return file[:len(file)-30] }, ErrCorrupt, "arrow", "footer"},
		{"stream junk after the marker", func(t *testing.T) []byte {
			// A metadata length of 2 GiB: refused by the limits, not allocated.
			return append(bytes.Clone(magicArrowContinuation), bytes.Repeat([]byte{0x7f}, 64)...)
		}, ErrCorrupt, "metadata length 2139062143 exceeds limit 68", "schema"},
		{"not arrow", func(t *testing.T) []byte { return []byte("hello, not arrow at all") }, ErrCorrupt, "not an Arrow IPC file", "byte 0"},
		{"body of a terabyte", func(t *testing.T) []byte {
			b := arrowFixture(t, false, arrow.BinaryTypes.String, [][]*string{strs(long)})
			// The record batch message's bodyLength: 8 (ids) + 8 (offsets) + 784 (text, padded) + 8 + 8.
			return replaceOnce(t, b, le64(8+8+784+8+8), le64(1<<40))
		}, ErrCorrupt, "message body length 1099511627776 exceeds limit", "record batch 0"},
		{"compressed buffer of a terabyte", func(t *testing.T) []byte {
			b := arrowFixture(t, false, arrow.BinaryTypes.String, [][]*string{strs(long)}, ipc.WithZstd())
			return replaceOnce(t, b, le64(777), le64(1<<40))
		}, ErrCorrupt, "buffer over the limit: 1099511627776 bytes asked for", "record batch 0"},
		{"inflates past the budget", func(t *testing.T) []byte {
			// Real zstd that inflates 70 MiB of text from a few KiB: more than
			// 64 times the file and 64 MiB, refused rather than held.
			return arrowFixture(t, false, arrow.BinaryTypes.String, [][]*string{strs(strings.Repeat("y", 70<<20))}, ipc.WithZstd())
		}, ErrCorrupt, "at most 67108864 for this file", "record batch 0"},
		{"no text column", func(t *testing.T) []byte {
			return replaceOnce(t, good, []byte("text"), []byte("body"))
		}, ErrMissingField, `no column "text" (columns: id, body, source`, "schema"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := write(t, filepath.Join(dir, "data", "data-00000-of-00001.arrow"), c.data(t))
			_, _, err := ingestDir(t, []string{dir}, Options{})
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "data/data-00000-of-00001.arrow: "+c.shown) || !strings.Contains(err.Error(), c.say) {
				t.Fatalf("error %v, want %v naming data/data-00000-of-00001.arrow at %s and saying %q", err, c.want, c.shown, c.say)
			}
			if strings.Contains(err.Error(), "panic") {
				t.Fatalf("error %v: a panic of our own code", err)
			}
			// Under skip the fault is one counted rejection.
			res, _, err := ingestDir(t, []string{p}, Options{OnError: OnErrorSkip})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Manifest.Rejections) == 0 || res.Manifest.Rejections[0].File != "data-00000-of-00001.arrow" {
				t.Fatalf("rejections %+v", res.Manifest.Rejections)
			}
		})
	}
	t.Run("integer text column", func(t *testing.T) {
		p := write(t, filepath.Join(t.TempDir(), "x.arrow"), good)
		_, _, err := ingestDir(t, []string{p}, Options{TextColumn: "id"})
		if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), `x.arrow: schema: missing text field: column "id" is int64, not a string column`) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("null text", func(t *testing.T) {
		b := arrowFixture(t, false, arrow.BinaryTypes.String, [][]*string{{nil, strs("kept")[0]}})
		p := write(t, filepath.Join(t.TempDir(), "x.arrow"), b)
		res, out, err := ingestDir(t, []string{p}, Options{OnError: OnErrorSkip})
		if err != nil {
			t.Fatal(err)
		}
		if docs := allDocs(t, out); len(docs) != 1 || docs[0].Text != "kept" || res.Manifest.Counts.Rejected[ReasonMissingField] != 1 ||
			res.Manifest.Rejections[0].Position != "record batch 0 row 0" {
			t.Fatalf("documents %+v, counts %+v, rejections %+v", docs, res.Manifest.Counts, res.Manifest.Rejections)
		}
	})
}

// FuzzArrow: the Arrow reader keeps fuzzRead's invariants on any bytes, as
// a stream or a file; arrow-go's panics on damaged metadata become counted
// rejections.
func FuzzArrow(f *testing.F) {
	b := [][]*string{strs("alpha", "beta"), strs("gamma", ""), {nil}}
	stream := arrowFixture(f, false, arrow.BinaryTypes.String, b)
	f.Add(stream)
	f.Add(stream[:len(stream)-20])
	f.Add(arrowFixture(f, true, arrow.BinaryTypes.LargeString, b))
	f.Add(arrowFixture(f, true, arrow.BinaryTypes.String, b, ipc.WithLZ4()))
	f.Add(arrowFixture(f, false, arrow.BinaryTypes.String, b, ipc.WithZstd()))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		fuzzRead(t, "f.arrow", FormatArrow, data, Options{MaxDocBytes: 1 << 12, MetaFields: []string{"source"}}, true)
	})
}
