package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/estkit/estkit/ingest/corpusgen"
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
	err := readJSONL(context.Background(), in, bytes.NewReader(data), -1, o, func(u unit) error {
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

// streamLines is n JSON lines whose texts name their stream and number.
func streamLines(stream string, n int) (data []byte, texts []string) {
	for i := range n {
		s := fmt.Sprintf("%s document %03d: the quick brown fox", stream, i)
		texts = append(texts, s)
		data = append(data, fmt.Sprintf("{\"text\": %q}\n", s)...)
	}
	return data, texts
}

func gzipMember(t *testing.T, b []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zstdFrame(t *testing.T, b []byte) []byte {
	e, err := zstd.NewWriter(nil) // frames carry a content checksum by default
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(b, nil)
}

// TestUnverifiedStreamSkip: with --on-error skip, the documents of a gzip
// member or zstd frame whose checksum fails (or that ends before its check)
// are rejected, never kept, and those of the members or frames that
// verified before it are kept; without skip the run fails naming the file.
// Today a damaged gzip member's altered documents were kept.
func TestUnverifiedStreamSkip(t *testing.T) {
	a, textsA := streamLines("first", 10)
	b, _ := streamLines("second", 12)
	flip := func(data []byte, at int) []byte {
		d := bytes.Clone(data)
		d[at] ^= 0x01
		return d
	}
	// A stored (level 0) member shows its text: damage a letter of it, so
	// the document still parses but says something else.
	storedB := gzipMember(t, b, gzip.NoCompression)
	letter := bytes.Index(storedB, []byte("document 007")) + 1
	zb := zstdFrame(t, b)
	cases := []struct {
		name     string
		file     string
		data     []byte
		kept     []string // exactly these documents kept
		rejected int64    // documents rejected, plus the fault; -1: at least the fault (a frame of one block fails before the decoder yields it)
	}{
		{"gzip-second-member-altered", "g.jsonl.gz", append(gzipMember(t, a, 6), flip(storedB, letter)...), textsA, 12 + 1},
		{"gzip-only-member-altered", "h.jsonl.gz", flip(storedB, letter), nil, 12 + 1},
		{"gzip-second-member-crc", "i.jsonl.gz", append(gzipMember(t, a, 6), flip(storedB, len(storedB)-6)...), textsA, 12 + 1},
		{"gzip-second-member-truncated", "j.jsonl.gz", append(gzipMember(t, a, 6), storedB[:len(storedB)-20]...), textsA, 11 + 1},
		{"zstd-second-frame-checksum", "z.jsonl.zst", append(zstdFrame(t, a), flip(zb, len(zb)-1)...), textsA, -1},
		{"zstd-only-frame-checksum", "y.jsonl.zst", flip(zb, len(zb)-1), nil, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "in")
			write(t, filepath.Join(root, c.file), c.data)
			_, _, err := ingestDir(t, []string{root}, Options{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.file) {
				t.Fatalf("under fail: error %v, want %v naming %s", err, ErrCorrupt, c.file)
			}
			m, dir := mustIngest(t, []string{root}, Options{OnError: OnErrorSkip})
			var got []string
			for _, d := range allDocs(t, dir) {
				got = append(got, d.Text)
			}
			if !slices.Equal(got, c.kept) {
				t.Fatalf("kept %d documents %q, want %d %q", len(got), got, len(c.kept), c.kept)
			}
			if r := m.Counts.Rejected[ReasonCorrupt]; r != c.rejected && (c.rejected >= 0 || r < 1) || sum(m.Counts.Rejected) != r {
				t.Fatalf("rejected %v, want corrupt=%d", m.Counts.Rejected, c.rejected)
			}
		})
	}
}

// TestUnverifiedXZSkip: an OpenWebText .xz whose stream fails its check
// keeps none of its documents under --on-error skip.
func TestUnverifiedXZSkip(t *testing.T) {
	texts := goTexts(t, 8)
	inner := corpusgen.OWTInner(texts, 0)
	for _, at := range []int{len(inner) / 2, len(inner) - 40} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "in")
			d := bytes.Clone(inner)
			d[at] ^= 0x10
			write(t, filepath.Join(root, "urlsf_subset00-1_data.xz"), d)
			m, dir := mustIngest(t, []string{root}, Options{OnError: OnErrorSkip})
			if docs := allDocs(t, dir); len(docs) != 0 || m.Counts.Rejected[ReasonCorrupt] < 1 {
				t.Fatalf("kept %d documents of a damaged xz stream; rejected %v", len(docs), m.Counts.Rejected)
			}
		})
	}
}

// FuzzZstdFrameLen checks the frame walker on any bytes: it never panics,
// and on valid concatenated frames it finds each frame's end.
func FuzzZstdFrameLen(f *testing.F) {
	a, _ := streamLines("a", 3)
	e, _ := zstd.NewWriter(nil)
	one := e.EncodeAll(a, nil)
	f.Add(append(bytes.Clone(one), one...))
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 'h', 'i'})
	f.Add(one[:len(one)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for off := int64(0); off < int64(len(data)); {
			n, err := zstdFrameLen(r, off, int64(len(data)))
			if err != nil {
				return
			}
			if n <= 0 || off+n > int64(len(data)) {
				t.Fatalf("frame at %d of length %d overruns %d bytes", off, n, len(data))
			}
			off += n
		}
	})
}

// TestZstdFrameLen: the walker splits concatenated frames where the encoder
// ended them.
func TestZstdFrameLen(t *testing.T) {
	a, _ := streamLines("a", 300)
	fa, fb := zstdFrame(t, a), zstdFrame(t, a[:100])
	data := append(bytes.Clone(fa), fb...)
	r := bytes.NewReader(data)
	if n, err := zstdFrameLen(r, 0, int64(len(data))); err != nil || n != int64(len(fa)) {
		t.Fatalf("first frame: %d, %v; want %d", n, err, len(fa))
	}
	if n, err := zstdFrameLen(r, int64(len(fa)), int64(len(data))); err != nil || n != int64(len(fb)) {
		t.Fatalf("second frame: %d, %v; want %d", n, err, len(fb))
	}
}
