package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/estkit/estkit/internal/store"
)

// Under --on-error skip a damaged compressed stream must not leave behind
// documents that were decoded from it before its checksum failed: a gzip
// member's CRC-32, a zstd frame's content checksum and an xz block's check
// are read only after the data they cover has been handed on. Holding a
// member's documents until its check would cost memory without bound (one
// `gzip file.jsonl` is one member), so the input is decoded once first,
// with the output discarded, to find how far it verifies; the reader then
// rejects, as corrupt, every document whose bytes lie past that point.
// Under --on-error fail no pass is needed: the fault fails the run and
// nothing of it is committed.

// verifiedPrefix returns how many decompressed bytes of in lie in gzip
// members or zstd frames that verified before the first fault, or -1 when
// the whole input verified or is not a compressed JSON-lines file. For an
// OpenWebText .xz it returns 0 on any fault: the xz reader does not report
// block boundaries, so the stream as a whole is the unit. Its only error is
// the run's cancellation.
func verifiedPrefix(ctx context.Context, in *Input, f *os.File) (int64, error) {
	sr := io.NewSectionReader(f, 0, in.Size)
	var n int64
	var ok bool
	switch {
	case (in.Format == FormatJSONL || in.Format == FormatSlimPajama) && strings.HasSuffix(in.Rel, ".gz"):
		n, ok = verifyGzip(ctx, sr)
	case (in.Format == FormatJSONL || in.Format == FormatSlimPajama) && strings.HasSuffix(in.Rel, ".zst"):
		n, ok = verifyZstd(ctx, sr, in.Size)
	case in.Format == FormatOWT:
		head := make([]byte, 64)
		k, _ := sr.ReadAt(head, 0)
		if !bytes.HasPrefix(head[:k], magicXZ) {
			return -1, nil // a plain tar: nested archives are checked one by one
		}
		ok = verifyXZ(ctx, sr, head[:k])
	default:
		return -1, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if ok {
		return -1, nil
	}
	return n, nil
}

// verifyGzip decodes member by member; compress/gzip checks each member's
// CRC-32 and size when it reaches the member's end.
func verifyGzip(ctx context.Context, r io.Reader) (int64, bool) {
	br := bufio.NewReader(store.WithContext(ctx, r)) // a flate.Reader: gzip reads no further than a member
	z, err := gzip.NewReader(br)
	if err != nil {
		return 0, false
	}
	var n int64
	for {
		z.Multistream(false)
		m, err := io.Copy(io.Discard, z)
		if err != nil {
			return n, false
		}
		n += m
		switch err := z.Reset(br); {
		case err == io.EOF:
			return n, true
		case err != nil:
			return n, false
		}
	}
}

// verifyZstd decodes frame by frame, finding each frame's end from its
// block headers (RFC 8878, section 3.1.1); the decoder checks a frame's
// content checksum at its end. A frame written without a checksum is
// trusted as far as it decodes.
func verifyZstd(ctx context.Context, r io.ReaderAt, size int64) (int64, bool) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderMaxMemory(1<<34))
	if err != nil {
		return 0, false
	}
	defer d.Close()
	var n int64
	for off := int64(0); off < size; {
		flen, err := zstdFrameLen(r, off, size)
		if err != nil {
			return n, false
		}
		if err := d.Reset(store.WithContext(ctx, io.NewSectionReader(r, off, flen))); err != nil {
			return n, false
		}
		m, err := io.Copy(io.Discard, d)
		if err != nil {
			return n, false
		}
		n += m
		off += flen
	}
	return n, true
}

var errZstdFrame = errors.New("zstd: damaged frame header")

// zstdFrameLen returns the compressed length of the frame (or skippable
// frame) at off.
func zstdFrameLen(r io.ReaderAt, off, size int64) (int64, error) {
	var h [14]byte // magic, descriptor, window, dictionary id (4), up to 4 bytes of size
	k, _ := r.ReadAt(h[:], off)
	if k < 8 {
		return 0, errZstdFrame
	}
	magic := binary.LittleEndian.Uint32(h[:4])
	if magic&0xfffffff0 == 0x184d2a50 { // skippable frame: magic, size, data
		return 8 + int64(binary.LittleEndian.Uint32(h[4:8])), nil
	}
	if magic != 0xfd2fb528 {
		return 0, errZstdFrame
	}
	fhd := h[4]
	single := fhd&0x20 != 0
	p := int64(5)
	if !single {
		p++ // window descriptor
	}
	p += [4]int64{0, 1, 2, 4}[fhd&3]
	fcs := [4]int64{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	p += off + fcs
	var b [3]byte
	for {
		if n, _ := r.ReadAt(b[:], p); n < 3 {
			return 0, errZstdFrame
		}
		bh := int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16
		p += 3
		switch (bh >> 1) & 3 {
		case 0, 2: // raw, compressed: the block's bytes follow
			p += bh >> 3
		case 1: // RLE: one byte follows
			p++
		default:
			return 0, errZstdFrame
		}
		if p > size {
			return 0, errZstdFrame
		}
		if bh&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 {
		p += 4 // content checksum
	}
	if p > size {
		return 0, errZstdFrame
	}
	return p - off, nil
}

// verifyXZ decodes a whole xz stream; the reader checks every block.
func verifyXZ(ctx context.Context, r io.Reader, head []byte) bool {
	if dc := xzDictCap(head); dc > maxXZDictCap {
		return false
	}
	xr, err := xz.ReaderConfig{DictCap: lzmaMinDictCap}.NewReader(bufio.NewReader(store.WithContext(ctx, r)))
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, xr)
	return err == nil
}

// unverified is the rejection of an item decoded from bytes past the
// verified prefix of its input.
func unverified(file, pos string, from int64) *InputError {
	what := "stream"
	switch {
	case strings.HasSuffix(file, ".gz"):
		what = "gzip member"
	case strings.HasSuffix(file, ".zst"):
		what = "zstd frame"
	case from == 0:
		what = "xz stream"
	}
	return &InputError{File: file, Position: pos,
		Err: wrapf(ErrCorrupt, "decoded from a %s that fails its check or ends early (decompressed byte %d on); not kept", what, from)}
}

// distrust turns the documents of res into rejections: they were decoded
// from a stream whose check failed. They were counted as read already.
func (r *result) distrust(file, why string) {
	for i := range r.docs {
		l := &r.docs[i].Lineage
		r.rejects = append(r.rejects, &InputError{File: file, Position: l.Position(), Err: wrapf(ErrCorrupt, "%s", why)})
	}
	r.docs = nil
}
