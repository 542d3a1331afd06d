package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/estkit/estkit/internal/ordered"
	"github.com/estkit/estkit/internal/store"
)

// queueDepth is how many units of one file may be in flight ahead of the
// writer. With R files read at once and W workers, memory in flight is
// about (R·queueDepth + 2W) units of chunkBytes each, plus nested archives.
const queueDepth = 4

// countingReader counts bytes read into a shared counter for progress.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type job struct {
	u    unit
	file string
}

// runPipeline reads inputs with up to o.Workers files at once, runs their
// units on o.Workers workers, and hands results to sink strictly in input
// order (file by file, each file's units in order), so the output does not
// depend on scheduling.
func runPipeline(ctx context.Context, inputs []*Input, o *Options, bytesRead *atomic.Int64, sink func(*Input, *result) error) error {
	return ordered.Run(ctx, ordered.Config[job, *result]{
		Streams: len(inputs), Readers: o.Workers, Workers: o.Workers,
		Depth: queueDepth, Queue: 2 * o.Workers,
		Read: func(ctx context.Context, i int, emit func(job) error) error {
			in := inputs[i]
			return readInputSafe(ctx, in, o, bytesRead, func(u unit) error { return emit(job{u: u, file: in.Rel}) })
		},
		Work: func(_ context.Context, _ int, j job) *result { return runUnit(j) },
		Sink: func(i int, res *result) error { return sink(inputs[i], res) },
	})
}

// runUnit runs u, turning a panic (a decoder's reaction to damaged input)
// into a rejection rather than a crash of the whole run.
func runUnit(j job) (res *result) {
	defer func() {
		if p := recover(); p != nil {
			res = &result{}
			res.reject(&InputError{File: j.file, Err: wrapf(ErrCorrupt, "decoder panic: %v", p)})
		}
	}()
	return j.u()
}

// readInputSafe is readInput with a third-party decoder's panic on damaged
// input (zstd, xz, tar, parquet run in the reader's goroutine) turned into
// a counted rejection of the file instead of a crash.
func readInputSafe(ctx context.Context, in *Input, o *Options, bytesRead *atomic.Int64, emit func(unit) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = emit(rejectUnit(&InputError{File: in.Rel, Err: wrapf(ErrCorrupt, "decoder panic: %v", p)}))
		}
	}()
	return readInput(ctx, in, o, bytesRead, emit)
}

// readInput runs the reader of in's format and turns a stream-level fault
// into a rejection unit that follows everything read before it.
func readInput(ctx context.Context, in *Input, o *Options, bytesRead *atomic.Int64, emit func(unit) error) error {
	f, err := os.Open(in.Path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	if in.Size == 0 {
		return emit(rejectUnit(&InputError{File: in.Rel, Position: "byte 0", Err: wrapf(ErrEmptyFile, "0 bytes")}))
	}
	verified := int64(-1)
	if o.OnError == OnErrorSkip {
		if verified, err = verifiedPrefix(ctx, in, f); err != nil {
			return err
		}
	}
	r := countingReader{r: store.WithContext(ctx, f), n: bytesRead}
	switch in.Format {
	case FormatOWT:
		err = readOWT(ctx, in, r, verified < 0, o, emit)
	case FormatSlimPajama, FormatJSONL:
		err = readJSONL(ctx, in, r, verified, o, emit)
	case FormatOWTParquet, FormatStarCoder, FormatParquet:
		err = readParquet(ctx, in, f, func(n int64) { bytesRead.Add(n) }, o, emit)
	case FormatText:
		err = readText(in, r, o, emit)
	case FormatArrow:
		err = readArrow(ctx, in, f, func(n int64) { bytesRead.Add(n) }, o, emit)
	default:
		panic("ingest: unresolved format " + string(in.Format))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ie *InputError
	if errors.As(err, &ie) {
		err = emit(rejectUnit(ie))
	}
	if err != nil {
		return err
	}
	return in.checkUnchanged()
}

// readText reads one .txt file as one document.
func readText(in *Input, r io.Reader, o *Options, emit func(unit) error) error {
	body, err := io.ReadAll(io.LimitReader(r, o.MaxDocBytes+1))
	if err != nil {
		return &InputError{File: in.Rel, Err: fmt.Errorf("%w: %v", ErrCorrupt, err)}
	}
	if int64(len(body)) > o.MaxDocBytes {
		return tooLarge(in.Rel, "", o.MaxDocBytes, "file")
	}
	d := Document{Text: string(body), Lineage: newLineage(in)}
	return emit(func() *result {
		res := &result{}
		o.finish(&d, res)
		return res
	})
}
