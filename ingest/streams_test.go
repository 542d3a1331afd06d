package ingest

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

// TestRejectedLineMemory: a JSON line too long for --max-doc-bytes is
// rejected before it is decoded, at a cost bounded by the line limit and
// not by the line. Today's limit let a line of 6 × --max-doc-bytes through
// to be copied and decoded (a 200 MB line cost 1.16 GB). Measured in bytes
// allocated, not time.
func TestRejectedLineMemory(t *testing.T) {
	const maxDoc = 1 << 20
	big := 13 << 19 // 6.5 MiB of text: under 6 × maxDoc + 1 MiB
	data := append([]byte(`{"text": "`), bytes.Repeat([]byte("x"), big)...)
	data = append(data, "\"}\n{\"text\": \"after\"}\n"...)
	o := &Options{OutDir: "unused", MaxDocBytes: maxDoc, OnError: OnErrorSkip}
	if err := o.resolve(); err != nil {
		t.Fatal(err)
	}
	in := &Input{Path: "big.jsonl", Rel: "big.jsonl", Format: FormatJSONL}
	var docs []Document
	var rejects []*InputError
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := readJSONL(context.Background(), in, bytes.NewReader(data), o, func(u unit) error {
		res := u()
		docs = append(docs, res.docs...)
		rejects = append(rejects, res.rejects...)
		return nil
	})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].Text != "after" || len(rejects) != 1 || reasonOf(rejects[0]) != ReasonTooLarge || rejects[0].Position != "line 1" {
		t.Fatalf("docs %d, rejects %v", len(docs), rejects)
	}
	// The limit is 2 × 1 MiB + 1 MiB; reading up to it costs a few times that.
	const bound = 16 << 20
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > bound {
		t.Fatalf("rejecting a %d-byte line allocated %d bytes, want at most %d", len(data), alloc, bound)
	}
}
