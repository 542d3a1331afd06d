package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// arrow-go decodes an IPC message's metadata (a flatbuffer) without
// verifying it: a vector's length is read from the buffer and allocated as
// is (schemaFromFB makes FieldsLength() fields; 44 GB in FuzzArrow's first
// finding). Document shards are checked against their manifest's sha256
// before Arrow reads them; raw inputs have no such check, so every message
// of an input's stream is verified here first, as flatbuffers' own
// verifiers do: every table, vtable, vector and string lies inside the
// buffer, with its elements. The layouts are those of the Arrow format's
// Message.fbs and Schema.fbs (field slots in declaration order).

// Union tags of MessageHeader and of Type that hold references to verify
// beyond a table's own bounds.
const (
	fbHeaderSchema          = 1
	fbHeaderDictionaryBatch = 2
	fbHeaderRecordBatch     = 3
	fbTypeTimestamp         = 10
	fbTypeUnion             = 14
)

// maxFieldDepth bounds the nesting of a schema's fields (children of
// children): real schemas nest a few levels.
const maxFieldDepth = 64

var errFlatbuffer = errors.New("invalid flatbuffer")

// fbVerifier checks one flatbuffer.
type fbVerifier struct {
	b       []byte
	visited int // tables visited; bounded by the buffer's size, so that shared subtables cannot make the work exponential
}

func (v *fbVerifier) fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFlatbuffer, fmt.Sprintf(format, args...))
}

// in reports whether n bytes at pos lie inside the buffer.
func (v *fbVerifier) in(pos, n uint64) bool {
	return pos <= uint64(len(v.b)) && n <= uint64(len(v.b))-pos
}

func (v *fbVerifier) u16(pos uint64) uint64 { return uint64(binary.LittleEndian.Uint16(v.b[pos:])) }
func (v *fbVerifier) u32(pos uint64) uint64 { return uint64(binary.LittleEndian.Uint32(v.b[pos:])) }

// fbTable is a verified table: its position and its vtable's.
type fbTable struct {
	pos, vt, vtSize, size uint64
}

// table verifies the table at pos and its vtable.
func (v *fbVerifier) table(pos uint64) (fbTable, error) {
	v.visited++
	if v.visited > len(v.b)/4+1 {
		return fbTable{}, v.fail("more tables than the buffer can hold")
	}
	if !v.in(pos, 4) {
		return fbTable{}, v.fail("table at %d outside %d bytes", pos, len(v.b))
	}
	vt := int64(pos) - int64(int32(binary.LittleEndian.Uint32(v.b[pos:])))
	if vt < 0 || !v.in(uint64(vt), 4) {
		return fbTable{}, v.fail("vtable of the table at %d outside the buffer", pos)
	}
	t := fbTable{pos: pos, vt: uint64(vt), vtSize: v.u16(uint64(vt)), size: v.u16(uint64(vt) + 2)}
	if t.vtSize < 4 || t.vtSize%2 != 0 || !v.in(t.vt, t.vtSize) || t.size < 4 || !v.in(pos, t.size) {
		return fbTable{}, v.fail("vtable of the table at %d malformed", pos)
	}
	return t, nil
}

// field returns the position of field slot i of t holding n bytes, or 0
// when the field is absent.
func (v *fbVerifier) field(t fbTable, i int, n uint64) (uint64, error) {
	slot := 4 + 2*uint64(i)
	if slot+2 > t.vtSize {
		return 0, nil
	}
	off := v.u16(t.vt + slot)
	if off == 0 {
		return 0, nil
	}
	if off+n > t.size {
		return 0, v.fail("field %d of the table at %d outside the table", i, t.pos)
	}
	return t.pos + off, nil
}

// ref follows the offset in field slot i of t; 0 when absent.
func (v *fbVerifier) ref(t fbTable, i int) (uint64, error) {
	p, err := v.field(t, i, 4)
	if err != nil || p == 0 {
		return 0, err
	}
	target := p + v.u32(p)
	if !v.in(target, 4) {
		return 0, v.fail("field %d of the table at %d points outside the buffer", i, t.pos)
	}
	return target, nil
}

// vector verifies the vector in field slot i of t with elements of elem
// bytes and returns its position and length (0, 0 when absent).
func (v *fbVerifier) vector(t fbTable, i int, elem uint64) (uint64, uint64, error) {
	p, err := v.ref(t, i)
	if err != nil || p == 0 {
		return 0, 0, err
	}
	n := v.u32(p)
	if !v.in(p+4, n*elem) {
		return 0, 0, v.fail("vector of %d elements at %d outside the buffer", n, p)
	}
	return p, n, nil
}

// tables verifies the vector of tables in field slot i of t and each
// table with check.
func (v *fbVerifier) tables(t fbTable, i int, check func(pos uint64) error) error {
	p, n, err := v.vector(t, i, 4)
	if err != nil {
		return err
	}
	for j := uint64(0); j < n; j++ {
		e := p + 4 + 4*j
		if err := check(e + v.u32(e)); err != nil {
			return err
		}
	}
	return nil
}

// child verifies the table in field slot i of t with check, if present.
func (v *fbVerifier) child(t fbTable, i int, check func(pos uint64) error) error {
	p, err := v.ref(t, i)
	if err != nil || p == 0 {
		return err
	}
	return check(p)
}

func (v *fbVerifier) plain(pos uint64) error {
	_, err := v.table(pos)
	return err
}

// keyValue: key (string), value (string).
func (v *fbVerifier) keyValue(pos uint64) error {
	t, err := v.table(pos)
	if err != nil {
		return err
	}
	for i := 0; i < 2; i++ {
		if _, _, err := v.vector(t, i, 1); err != nil {
			return err
		}
	}
	return nil
}

// schema: endianness, fields [Field], custom_metadata [KeyValue], features [long].
func (v *fbVerifier) schema(pos uint64) error {
	t, err := v.table(pos)
	if err != nil {
		return err
	}
	if err := v.tables(t, 1, func(p uint64) error { return v.fieldTable(p, 0) }); err != nil {
		return err
	}
	if err := v.tables(t, 2, v.keyValue); err != nil {
		return err
	}
	_, _, err = v.vector(t, 3, 8)
	return err
}

// fieldTable: name, nullable, type_type, type, dictionary, children [Field], custom_metadata.
func (v *fbVerifier) fieldTable(pos uint64, depth int) error {
	if depth > maxFieldDepth {
		return v.fail("fields nested deeper than %d", maxFieldDepth)
	}
	t, err := v.table(pos)
	if err != nil {
		return err
	}
	if _, _, err := v.vector(t, 0, 1); err != nil {
		return err
	}
	tp, err := v.field(t, 2, 1)
	if err != nil {
		return err
	}
	typeTag := byte(0)
	if tp != 0 {
		typeTag = v.b[tp]
	}
	if err := v.child(t, 3, func(p uint64) error {
		tt, err := v.table(p)
		if err != nil {
			return err
		}
		switch typeTag {
		case fbTypeTimestamp: // unit, timezone (string)
			_, _, err = v.vector(tt, 1, 1)
		case fbTypeUnion: // mode, typeIds [int]
			_, _, err = v.vector(tt, 1, 4)
		}
		return err
	}); err != nil {
		return err
	}
	if err := v.child(t, 4, func(p uint64) error { // DictionaryEncoding: id, indexType (Int), isOrdered, kind
		dt, err := v.table(p)
		if err != nil {
			return err
		}
		return v.child(dt, 1, v.plain)
	}); err != nil {
		return err
	}
	if err := v.tables(t, 5, func(p uint64) error { return v.fieldTable(p, depth+1) }); err != nil {
		return err
	}
	return v.tables(t, 6, v.keyValue)
}

// recordBatch: length, nodes [FieldNode: 16 bytes], buffers [Buffer: 16
// bytes], compression (BodyCompression), variadicBufferCounts [long].
func (v *fbVerifier) recordBatch(pos uint64) error {
	t, err := v.table(pos)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		slot int
		elem uint64
	}{{1, 16}, {2, 16}, {4, 8}} {
		if _, _, err := v.vector(t, f.slot, f.elem); err != nil {
			return err
		}
	}
	return v.child(t, 3, v.plain)
}

// verifyMessage verifies an IPC message's metadata flatbuffer: Message
// {version, header_type, header, bodyLength, custom_metadata}.
func verifyMessage(b []byte) error {
	v := &fbVerifier{b: b}
	if !v.in(0, 4) {
		return v.fail("%d bytes", len(b))
	}
	t, err := v.table(v.u32(0))
	if err != nil {
		return err
	}
	hp, err := v.field(t, 1, 1)
	if err != nil {
		return err
	}
	if _, err := v.field(t, 3, 8); err != nil {
		return err
	}
	header := byte(0)
	if hp != 0 {
		header = b[hp]
	}
	if err := v.child(t, 2, func(p uint64) error {
		switch header {
		case fbHeaderSchema:
			return v.schema(p)
		case fbHeaderRecordBatch:
			return v.recordBatch(p)
		case fbHeaderDictionaryBatch: // id, data (RecordBatch), isDelta
			dt, err := v.table(p)
			if err != nil {
				return err
			}
			return v.child(dt, 1, v.recordBatch)
		}
		return v.plain(p)
	}); err != nil {
		return err
	}
	return v.tables(t, 4, v.keyValue)
}

// verifiedStream passes an Arrow IPC stream through, holding back each
// message's metadata until verifyMessage has checked it: arrow-go then
// only ever decodes verified metadata. It follows the stream's framing:
// 0xFFFFFFFF, a 4-byte metadata length, the metadata, then the message
// body, whose length the verified metadata gives.
type verifiedStream struct {
	r        io.Reader
	maxMeta  int64
	pending  []byte // verified bytes not yet handed on
	bodyLeft int64  // body bytes of the current message still to pass through
	done     bool   // the end-of-stream marker was passed on
}

func (s *verifiedStream) Read(p []byte) (int, error) {
	if len(s.pending) == 0 && s.bodyLeft == 0 {
		if s.done {
			return 0, io.EOF
		}
		if err := s.nextMessage(); err != nil {
			return 0, err
		}
	}
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if int64(len(p)) > s.bodyLeft {
		p = p[:s.bodyLeft]
	}
	n, err := s.r.Read(p)
	s.bodyLeft -= int64(n)
	return n, err
}

// nextMessage reads and verifies the next message's prefix and metadata
// into pending. A length over the limit is passed on unread, for arrow-go
// to refuse with its own message.
func (s *verifiedStream) nextMessage() error {
	head := make([]byte, 8)
	if _, err := io.ReadFull(s.r, head[:4]); err != nil {
		return err
	}
	prefix := 4
	n := binary.LittleEndian.Uint32(head)
	if n == 0xFFFFFFFF {
		if _, err := io.ReadFull(s.r, head[4:]); err != nil {
			return err
		}
		prefix = 8
		n = binary.LittleEndian.Uint32(head[4:])
	}
	// A length of 0 is the end-of-stream marker (with or without the
	// continuation); a negative one is arrow-go's to refuse.
	if n == 0 || int32(n) < 4 || int64(n) > s.maxMeta {
		s.pending, s.done = head[:prefix], true
		return nil
	}
	meta := make([]byte, prefix+int(n))
	copy(meta, head[:prefix])
	if _, err := io.ReadFull(s.r, meta[prefix:]); err != nil {
		return err
	}
	if err := verifyMessage(meta[prefix:]); err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	// bodyLength is field 3 of the verified Message; absent means 0.
	v := &fbVerifier{b: meta[prefix:]}
	t, _ := v.table(v.u32(0))
	if p, _ := v.field(t, 3, 8); p != 0 {
		s.bodyLeft = int64(binary.LittleEndian.Uint64(v.b[p:]))
		if s.bodyLeft < 0 {
			s.bodyLeft = 0 // arrow-go refuses the negative length itself
		}
	}
	s.pending = meta
	return nil
}
