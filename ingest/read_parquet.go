package ingest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// starCoderMeta are the StarCoderData repository columns kept as lineage
// metadata (from the dataset card; the issue, commit and Jupyter folders
// lack them and simply contribute none).
var starCoderMeta = []string{"id", "max_stars_count", "max_stars_repo_name", "max_stars_repo_path"}

// parquetBatchRows is the record batch size read from parquet files: small
// enough that a batch of large source files (StarCoderData rows reach about
// 1 MB) stays bounded, large enough to amortise the per-batch work.
const parquetBatchRows = 256

// readParquet reads the text column (and metadata columns) of a parquet
// file row group by row group, in batches, so memory is bounded by a batch
// of rows rather than the file.
func readParquet(ctx context.Context, in *Input, f *os.File, countBytes func(int64), o *Options, emit func(unit) error) (err error) {
	where := "footer"
	defer func() {
		// arrow-go's parquet decoder can panic on damaged files; that is a
		// fault of the file, reported as such.
		if p := recover(); p != nil {
			err = &InputError{File: in.Rel, Position: where, Err: wrapf(ErrCorrupt, "parquet decoder panic: %v", p)}
		}
	}()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		return &InputError{File: in.Rel, Position: "footer", Err: wrapf(ErrCorrupt, "parquet: %v", err)}
	}
	defer pf.Close()
	md := pf.MetaData()
	textName := o.textColumn(in.Format)
	textIdx := md.Schema.ColumnIndexByName(textName)
	if textIdx < 0 {
		return &InputError{File: in.Rel, Position: "schema", Err: wrapf(ErrMissingField, "no column %q (columns: %s)", textName, columnNames(pf))}
	}
	if in.Format == FormatStarCoder && len(o.Langs) > 0 && !slices.Contains(o.Langs, in.Lang) {
		n := md.NumRows
		countBytes(in.Size)
		return emit(func() *result {
			res := &result{}
			for i := int64(0); i < n; i++ {
				res.filter(FilterLang)
			}
			return res
		})
	}
	metaNames := o.MetaFields
	if in.Format == FormatStarCoder {
		metaNames = starCoderMeta
	}
	cols := []int{textIdx}
	var keys []string
	for _, m := range metaNames {
		if i := md.Schema.ColumnIndexByName(m); i >= 0 && i != textIdx {
			cols = append(cols, i)
			keys = append(keys, m)
		}
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: parquetBatchRows}, memory.NewGoAllocator())
	if err != nil {
		return &InputError{File: in.Rel, Position: "schema", Err: wrapf(ErrCorrupt, "parquet: %v", err)}
	}
	base := newLineage(in)
	for rg := 0; rg < pf.NumRowGroups(); rg++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		where = fmt.Sprintf("row group %d", rg)
		rr, err := fr.GetRecordReader(ctx, cols, []int{rg})
		if err != nil {
			return &InputError{File: in.Rel, Position: fmt.Sprintf("row group %d", rg), Err: wrapf(ErrCorrupt, "parquet: %v", err)}
		}
		var row int64
		for rr.Next() {
			if err := ctx.Err(); err != nil {
				rr.Release()
				return err
			}
			rec := rr.RecordBatch()
			es := parquetEntries(rec, keys, base, int32(rg), row, in)
			row += rec.NumRows()
			where = fmt.Sprintf("row group %d row %d", rg, row)
			if err := emit(func() *result {
				res := &result{}
				o.finishEntries(es, res)
				return res
			}); err != nil {
				rr.Release()
				return err
			}
		}
		err = rr.Err()
		rr.Release()
		if err != nil {
			return &InputError{File: in.Rel, Position: fmt.Sprintf("row group %d row %d", rg, row), Err: wrapf(ErrCorrupt, "parquet: %v", err)}
		}
		countBytes(md.RowGroup(rg).TotalCompressedSize())
	}
	return nil
}

// parquetEntries copies one record batch's rows into documents, in order;
// null or non-string text becomes a rejection.
func parquetEntries(rec arrow.RecordBatch, keys []string, base Lineage, rg int32, row0 int64, in *Input) []entry {
	n := int(rec.NumRows())
	es := make([]entry, 0, n)
	text := rec.Column(0)
	for i := 0; i < n; i++ {
		lin := base
		lin.RowGroup, lin.Row = rg, row0+int64(i)
		s, ok := stringAt(text, i)
		if !ok {
			es = append(es, entry{err: &InputError{File: in.Rel, Position: lin.Position(), Err: wrapf(ErrMissingField, "text is null or not a string (%s)", text.DataType())}})
			continue
		}
		for k, key := range keys {
			col := rec.Column(k + 1)
			if col.IsNull(i) {
				continue
			}
			v, ok := stringAt(col, i)
			if !ok {
				v = col.ValueStr(i)
			}
			lin.Meta = append(lin.Meta, KV{Key: key, Value: v})
		}
		if in.Format == FormatStarCoder {
			lin.Meta = append(lin.Meta, KV{Key: "lang", Value: in.Lang})
		}
		sort.Slice(lin.Meta, func(a, b int) bool { return lin.Meta[a].Key < lin.Meta[b].Key })
		es = append(es, entry{doc: Document{Text: s, Lineage: lin}})
	}
	return es
}

// stringAt returns a copy of a string or binary value.
func stringAt(a arrow.Array, i int) (string, bool) {
	if a.IsNull(i) {
		return "", false
	}
	switch c := a.(type) {
	case *array.String:
		return strings.Clone(c.Value(i)), true
	case *array.LargeString:
		return strings.Clone(c.Value(i)), true
	case *array.StringView:
		return strings.Clone(c.Value(i)), true
	case *array.Binary:
		return string(c.Value(i)), true
	case *array.LargeBinary:
		return string(c.Value(i)), true
	}
	return "", false
}

func columnNames(pf *file.Reader) string {
	s := pf.MetaData().Schema
	names := make([]string, s.NumColumns())
	for i := range names {
		names[i] = s.Column(i).Path()
	}
	return strings.Join(names, ", ")
}

// sniffParquet tells StarCoderData and OpenWebText parquet from generic
// parquet by their columns.
func sniffParquet(in *Input) (format Format, why string, err error) {
	defer func() {
		if recover() != nil { // a damaged file: its reader reports the damage with a position
			format, why, err = FormatParquet, "", nil
		}
	}()
	f, err := os.Open(in.Path)
	if err != nil {
		return "", "", fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	pf, err := file.NewParquetReader(f)
	if err != nil {
		return FormatParquet, "", nil // the reader reports the damage with its position
	}
	defer pf.Close()
	s := pf.MetaData().Schema
	has := func(n string) bool { return s.ColumnIndexByName(n) >= 0 }
	switch {
	case has("content") && has("max_stars_repo_name"):
		return FormatStarCoder, "", nil
	case has("text") && s.NumColumns() == 1 && strings.HasPrefix(pathBase(in.Rel), "train-"):
		return FormatOWTParquet, "", nil
	}
	return FormatParquet, "", nil
}

func pathBase(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[i+1:]
	}
	return rel
}
