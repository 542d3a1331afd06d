package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// writeDocShard writes a one-row document shard of the given schema, its
// first 12 columns filled as a jsonl document's and the others null.
func writeDocShard(t *testing.T, path string, schema *arrow.Schema) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(colText).(*array.StringBuilder).Append("hello")
	b.Field(colCorpus).(*array.StringBuilder).Append("jsonl")
	b.Field(colFile).(*array.StringBuilder).Append("a.jsonl")
	b.Field(colFileSHA256).(*array.StringBuilder).Append("00")
	b.Field(colMember).AppendNull()
	b.Field(colLine).(*array.Int64Builder).Append(3)
	b.Field(colOffset).(*array.Int64Builder).Append(20)
	b.Field(colRowGroup).AppendNull()
	b.Field(colRow).AppendNull()
	b.Field(colBytes).(*array.Int64Builder).Append(5)
	b.Field(colSHA256).(*array.FixedSizeBinaryBuilder).Append(make([]byte, 32))
	b.Field(colMeta).(*array.MapBuilder).Append(true)
	for c := colMeta + 1; c < len(schema.Fields()); c++ {
		b.Field(c).AppendNull()
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDocShardVersion1: shards written before the batch and revision
// columns (version 1) are still read, their new lineage fields absent; an
// unknown version is refused with ErrVersion.
func TestDocShardVersion1(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "v1.arrow")
	writeDocShard(t, p, docSchemaV1)
	var docs []Document
	if err := ScanShard(p, func(rec arrow.RecordBatch) (bool, error) {
		for i := 0; i < int(rec.NumRows()); i++ {
			docs = append(docs, DocumentAt(rec, i))
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	l := docs[0].Lineage
	if docs[0].Text != "hello" || l.Line != 3 || l.Offset != 20 || l.Batch != -1 || l.Row != -1 || l.RowGroup != -1 || l.Revision != "" {
		t.Fatalf("document %+v", docs[0])
	}

	md := arrow.NewMetadata([]string{"estkit.schema", "estkit.version"}, []string{SchemaName, "9"})
	v9 := filepath.Join(dir, "v9.arrow")
	writeDocShard(t, v9, arrow.NewSchema(DocSchema.Fields(), &md))
	if _, err := OpenShard(v9); !errors.Is(err, ErrVersion) {
		t.Fatalf("version 9: error %v, want ErrVersion", err)
	}
}
