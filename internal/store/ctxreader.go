package store

import (
	"context"
	"io"
)

// WithContext is r that stops reading once ctx is done: a Read after the
// cancellation returns ctx's error, so that a loop over an input's bytes
// (hashing a file, decompressing, reading standard input or a device)
// ends at its next chunk after the first Ctrl-C.
func WithContext(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
