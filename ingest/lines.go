package ingest

import (
	"bufio"
	"context"
	"io"
)

// lineReader reads lines of at most max bytes without ever holding more: a
// longer line is skipped to its end and reported as too long, so that one
// enormous line cannot exhaust memory.
type lineReader struct {
	ctx    context.Context // when set, checked at every buffer's worth of one line
	r      *bufio.Reader
	max    int
	buf    []byte
	line   int64 // number of the line last returned, 1-based
	offset int64 // byte offset of the next line
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 1<<20), max: max}
}

// next returns the next line without its '\n', its number and its byte
// offset. tooLong reports a line longer than max (then line is nil). The
// returned slice is valid until the next call. err is io.EOF at the end; a
// final line without '\n' is returned as a line.
func (lr *lineReader) next() (line []byte, num, off int64, tooLong bool, err error) {
	lr.buf = lr.buf[:0]
	off = lr.offset
	for {
		frag, e := lr.r.ReadSlice('\n')
		lr.offset += int64(len(frag))
		if !tooLong {
			if len(lr.buf)+len(frag) > lr.max+1 { // +1: the '\n'
				tooLong = true
				lr.buf = lr.buf[:0]
			} else if e == nil && len(lr.buf) == 0 {
				line = frag // fast path: the whole line is in the bufio buffer
			} else {
				if need := len(lr.buf) + len(frag); need > cap(lr.buf) {
					// Double up to the limit rather than grow by append's
					// quarter steps: a line near the limit then costs
					// about twice its length in allocations, not six times.
					nb := make([]byte, len(lr.buf), min(max(2*cap(lr.buf), need), lr.max+1))
					copy(nb, lr.buf)
					lr.buf = nb
				}
				lr.buf = append(lr.buf, frag...)
			}
		}
		switch e {
		case nil:
			lr.line++
			if tooLong {
				return nil, lr.line, off, true, nil
			}
			if line == nil {
				line = lr.buf
			}
			return line[:len(line)-1], lr.line, off, false, nil
		case bufio.ErrBufferFull:
			// One line that never ends (a /dev/zero, a decompression bomb)
			// must still stop at the first Ctrl-C.
			if lr.ctx != nil {
				if err := lr.ctx.Err(); err != nil {
					return nil, lr.line, off, false, err
				}
			}
			continue
		case io.EOF:
			if lr.offset == off { // no bytes: clean end
				return nil, lr.line, off, false, io.EOF
			}
			lr.line++
			if tooLong || len(lr.buf) > lr.max { // a last line has no '\n' to allow for
				return nil, lr.line, off, true, nil
			}
			return lr.buf, lr.line, off, false, nil
		default:
			lr.line++
			return nil, lr.line, off, false, e
		}
	}
}
