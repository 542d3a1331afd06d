package ingest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/ulikunitz/xz"

	"github.com/estkit/estkit/internal/store"
)

// maxNestedBytes bounds a compressed archive nested in a tar (OpenWebText's
// urlsf_subsetNN-M_data.xz members are a few MB), which is read whole so that
// a worker can decode it while the reader goes on, and also the text a worker
// holds from one nested archive: members past that much text are rejected as
// too large (extract such an archive and ingest its files instead).
const maxNestedBytes = 256 << 20

// Filter reasons of archive members that are not documents.
const (
	// FilterNonText counts regular members that are neither documents
	// (.txt) nor nested archives (.xz, .tar).
	FilterNonText = "non-text-member"
	// FilterNonRegular counts symlinks, hard links, devices and FIFOs.
	FilterNonRegular = "non-regular-member"
)

// entry is one item of a unit in input order: a document, a filtered item
// or a rejection. Keeping them in one ordered list keeps the first error in
// input order first.
type entry struct {
	doc    Document
	filter string
	err    *InputError
}

// finishEntries files the entries under res in order.
func (o *Options) finishEntries(es []entry, res *result) {
	for i := range es {
		switch e := &es[i]; {
		case e.err != nil:
			res.reject(e.err)
		case e.filter != "":
			res.filter(e.filter)
		default:
			o.finish(&e.doc, res)
		}
	}
}

// readOWT reads OpenWebText as released: any nesting of xz and tar whose
// leaves are .txt documents. The outer stream is read here; nested archives
// are handed to workers whole, so xz decoding runs on every core.
//
// trusted is false when the input is an xz stream that fails its check
// (verifiedPrefix): its documents are then rejected, not kept.
func readOWT(ctx context.Context, in *Input, r io.Reader, trusted bool, o *Options, emit func(unit) error) error {
	base := newLineage(in)
	var batch []entry
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		es := batch
		batch, size = nil, 0
		return emit(func() *result {
			res := &result{}
			o.finishEntries(es, res)
			return res
		})
	}
	err := walkArchive(ctx, r, in.Rel, "", o, func(member string, kind memberKind, body []byte, merr *InputError) error {
		switch {
		case merr != nil:
			batch = append(batch, entry{err: merr})
		case kind == memberOther:
			batch = append(batch, entry{filter: FilterNonText})
		case kind == memberNonRegular:
			batch = append(batch, entry{filter: FilterNonRegular})
		case kind == memberText && !trusted:
			batch = append(batch, entry{err: unverified(in.Rel, "member "+member, 0)})
		case kind == memberText:
			d := Document{Text: string(body), Lineage: base}
			d.Lineage.Member = member
			batch = append(batch, entry{doc: d})
			size += len(body)
		case kind == memberNested:
			if err := flush(); err != nil {
				return err
			}
			return emit(func() *result {
				res := o.readNested(ctx, in, base, member, body)
				if !trusted {
					res.distrust(in.Rel, unverified(in.Rel, "", 0).Err.Error())
				}
				return res
			})
		}
		if size >= chunkBytes || len(batch) >= chunkLines {
			return flush()
		}
		return nil
	})
	if ferr := flush(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// readNested decodes a nested archive (a worker's unit). Archives nest at
// most twice (tar → xz → tar), as OpenWebText's releases do.
func (o *Options) readNested(ctx context.Context, in *Input, base Lineage, member string, body []byte) *result {
	res := &result{}
	var held int64
	err := walkArchive(ctx, bytes.NewReader(body), in.Rel, member+"/", o, func(m string, k memberKind, b []byte, e *InputError) error {
		switch {
		case e != nil:
			res.reject(e)
		case k == memberOther:
			res.filter(FilterNonText)
		case k == memberNonRegular:
			res.filter(FilterNonRegular)
		case k == memberNested:
			res.reject(&InputError{File: in.Rel, Position: "member " + m, Err: wrapf(ErrCorrupt, "archive nested more than twice")})
		case held+int64(len(b)) > maxNestedBytes:
			res.reject(tooLarge(in.Rel, "member "+m, maxNestedBytes, "text of one nested archive"))
		default:
			held += int64(len(b))
			d := Document{Text: string(b), Lineage: base}
			d.Lineage.Member = m
			o.finish(&d, res)
		}
		return nil
	})
	if err != nil {
		var ie *InputError
		if !errors.As(err, &ie) {
			ie = &InputError{File: in.Rel, Position: "member " + member, Err: wrapf(ErrCorrupt, "%v", err)}
		}
		res.reject(ie)
		if bytes.HasPrefix(body, magicXZ) {
			// The xz check of what was decoded before the fault was never
			// reached (or failed): none of it is kept.
			res.distrust(in.Rel, "decoded from nested xz stream "+member+" that fails its check or ends early; not kept")
		}
	}
	return res
}

// maxXZDictCap bounds the LZMA2 dictionary an xz stream may ask for: the
// decoder allocates it up front, so a damaged or hostile header could
// otherwise demand 4 GiB. xz -9 uses 64 MiB.
const (
	maxXZDictCap   = 64 << 20
	lzmaMinDictCap = 4096
)

// xzDictCap reads the dictionary size of the first block's LZMA2 filter
// from the start of an xz stream (xz file format 1.0.4, sections 2.1 and
// 5.3.1), or returns 0 when it cannot tell (the decoder then reports what
// is wrong). Later blocks are not looked at.
func xzDictCap(b []byte) int64 {
	if len(b) < 13 || b[12] == 0 {
		return 0
	}
	hdrSize := (int(b[12]) + 1) * 4
	if len(b) < 12+hdrSize {
		return 0
	}
	h := b[12 : 12+hdrSize]
	flags := h[1]
	i := 2
	varint := func() (uint64, bool) {
		var v uint64
		for s := 0; i < len(h) && s < 63; s += 7 {
			c := h[i]
			i++
			v |= uint64(c&0x7f) << s
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	if flags&0x40 != 0 {
		if _, ok := varint(); !ok {
			return 0
		}
	}
	if flags&0x80 != 0 {
		if _, ok := varint(); !ok {
			return 0
		}
	}
	for f := 0; f <= int(flags&0x03); f++ {
		id, ok1 := varint()
		n, ok2 := varint()
		if !ok1 || !ok2 || i+int(n) > len(h) {
			return 0
		}
		if id == 0x21 && n == 1 { // LZMA2
			bits := h[i] & 0x3f
			if bits > 40 {
				return 0
			}
			if bits == 40 {
				return 0xffffffff
			}
			return int64(2|bits&1) << (bits/2 + 11)
		}
		i += int(n)
	}
	return 0
}

type memberKind int

const (
	memberText memberKind = iota
	memberNested
	memberOther      // a regular file that is neither
	memberNonRegular // symlink, hard link, device, FIFO
)

// walkArchive reads r, which is a tar or an xz-compressed tar, and calls fn
// for each regular member in order: text members and nested archives with
// their bytes, other members with none, and unsafe or oversized members with
// a rejection. A damaged stream ends the walk with an *InputError.
func walkArchive(ctx context.Context, r io.Reader, file, prefix string, o *Options, fn func(member string, kind memberKind, body []byte, err *InputError) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(len(magicXZ))
	var stream io.Reader = br
	where := "member " + strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		where = "byte 0"
	}
	if bytes.Equal(head, magicXZ) {
		hdr, _ := br.Peek(64)
		if dc := xzDictCap(hdr); dc > maxXZDictCap {
			return &InputError{File: file, Position: where, Err: wrapf(ErrCorrupt, "xz: dictionary of %d MiB exceeds the %d MiB that xz -9 uses", dc>>20, maxXZDictCap>>20)}
		}
		// The decoder allocates max(DictCap, the block's dictionary): ask for
		// the least, so small archives cost little.
		xr, err := xz.ReaderConfig{DictCap: lzmaMinDictCap}.NewReader(br)
		if err != nil {
			return &InputError{File: file, Position: where, Err: wrapf(ErrCorrupt, "xz: %v", err)}
		}
		// An xz member can expand a thousandfold: check the run between
		// reads of what it decodes too.
		stream = store.WithContext(ctx, xr)
	}
	tr := tar.NewReader(stream)
	last := ""
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return &InputError{File: file, Position: where, Err: wrapf(ErrCorrupt, "no tar members")}
			}
			return nil
		}
		if err != nil {
			return &InputError{File: file, Position: afterMember(prefix, last), Err: wrapf(ErrCorrupt, "%v", err)}
		}
		name := prefix + h.Name
		last = h.Name
		switch h.Typeflag {
		case tar.TypeReg: // the reader reports old-style regular files (TypeRegA) as TypeReg
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue // structure, not content
		default:
			if err := fn(name, memberNonRegular, nil, nil); err != nil {
				return err
			}
			continue
		}
		last = h.Name
		if !safeMemberName(h.Name) {
			if err := fn(name, memberOther, nil, &InputError{File: file, Position: "member " + name, Err: wrapf(ErrUnsafePath, "member name %q escapes the archive", h.Name)}); err != nil {
				return err
			}
			continue
		}
		var kind memberKind
		var limit int64
		switch {
		case strings.HasSuffix(h.Name, ".txt"):
			kind, limit = memberText, o.MaxDocBytes
		case strings.HasSuffix(h.Name, ".xz"), strings.HasSuffix(h.Name, ".tar"):
			kind, limit = memberNested, maxNestedBytes
		default:
			if err := fn(name, memberOther, nil, nil); err != nil {
				return err
			}
			continue
		}
		if h.Size > limit {
			if err := fn(name, kind, nil, tooLarge(file, "member "+name, limit, "member")); err != nil {
				return err
			}
			continue
		}
		// Grow with the bytes that arrive, not by the header's claim, so a
		// damaged size field cannot allocate what the archive does not hold.
		var body bytes.Buffer
		body.Grow(int(min(h.Size, 1<<20)))
		if _, err := io.CopyN(&body, tr, h.Size); err != nil {
			return &InputError{File: file, Position: "member " + name, Err: wrapf(ErrCorrupt, "%v", err)}
		}
		if err := fn(name, kind, body.Bytes(), nil); err != nil {
			return err
		}
	}
}

func afterMember(prefix, last string) string {
	if last == "" {
		if prefix == "" {
			return "first tar header"
		}
		return "member " + strings.TrimSuffix(prefix, "/") + ": first tar header"
	}
	return fmt.Sprintf("after member %s%s", prefix, last)
}

// safeMemberName rejects names that would escape a directory the archive
// was extracted into: absolute paths and any ".." component.
func safeMemberName(name string) bool {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return false
		}
	}
	return path.Clean(name) != ".."
}
