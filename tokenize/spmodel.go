package tokenize

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A reader of SentencePiece's tokenizer.model: the protobuf ModelProto of
// sentencepiece_model.proto, of which only the fields estkit uses are
// decoded; the rest are skipped by wire type. Why our own: it is ~150 lines
// against a dependency on the protobuf runtime plus generated code for a
// schema we do not own; FuzzSentencePieceModel covers it.

// ErrModel: a tokenizer.model that does not parse or is not supported.
var ErrModel = errors.New("tokenize: bad SentencePiece model")

// Piece types (ModelProto.SentencePiece.Type).
const (
	pieceNormal      = 1
	pieceUnknown     = 2
	pieceControl     = 3
	pieceUserDefined = 4
	pieceUnused      = 5
	pieceByte        = 6
)

type spPiece struct {
	piece string
	score float32
	typ   int
}

// spModel is the decoded part of a ModelProto.
type spModel struct {
	pieces []spPiece
	// trainer_spec
	modelType               int // 1 unigram, 2 BPE, 3 word, 4 char
	byteFallback            bool
	treatWhitespaceAsSuffix bool
	unkID, bosID, eosID     int
	// normalizer_spec
	normalizerName         string
	charsMap               bool // a precompiled normalisation map is present
	addDummyPrefix         bool
	removeExtraWhitespaces bool
	escapeWhitespaces      bool
}

// wire is a protobuf wire-format cursor.
type wire struct {
	b   []byte
	off int
}

func (w *wire) varint() (uint64, error) {
	v, n := binary.Uvarint(w.b[w.off:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint at byte %d", ErrModel, w.off)
	}
	w.off += n
	return v, nil
}

// next reads a field's key and returns its number and wire type.
func (w *wire) next() (field int, typ int, err error) {
	k, err := w.varint()
	if err != nil {
		return 0, 0, err
	}
	return int(k >> 3), int(k & 7), nil
}

// bytes reads a length-delimited value.
func (w *wire) bytes() ([]byte, error) {
	n, err := w.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(w.b)-w.off) {
		return nil, fmt.Errorf("%w: field of %d bytes at byte %d overruns the message", ErrModel, n, w.off)
	}
	v := w.b[w.off : w.off+int(n)]
	w.off += int(n)
	return v, nil
}

// skip passes over a value of wire type typ.
func (w *wire) skip(typ int) error {
	switch typ {
	case 0:
		_, err := w.varint()
		return err
	case 1:
		if w.off+8 > len(w.b) {
			return fmt.Errorf("%w: truncated fixed64 at byte %d", ErrModel, w.off)
		}
		w.off += 8
	case 2:
		_, err := w.bytes()
		return err
	case 5:
		if w.off+4 > len(w.b) {
			return fmt.Errorf("%w: truncated fixed32 at byte %d", ErrModel, w.off)
		}
		w.off += 4
	default:
		return fmt.Errorf("%w: wire type %d at byte %d", ErrModel, typ, w.off)
	}
	return nil
}

// fields calls fn for each field of message b; fn reads the value or
// returns handled=false to have it skipped.
func fields(b []byte, fn func(w *wire, field, typ int) (handled bool, err error)) error {
	w := &wire{b: b}
	for w.off < len(w.b) {
		f, t, err := w.next()
		if err != nil {
			return err
		}
		ok, err := fn(w, f, t)
		if err != nil {
			return err
		}
		if !ok {
			if err := w.skip(t); err != nil {
				return err
			}
		}
	}
	return nil
}

func boolField(w *wire, typ int, dst *bool) (bool, error) {
	if typ != 0 {
		return false, nil
	}
	v, err := w.varint()
	*dst = v != 0
	return true, err
}

func intField(w *wire, typ int, dst *int) (bool, error) {
	if typ != 0 {
		return false, nil
	}
	v, err := w.varint()
	*dst = int(int32(v)) // int32 fields: negative values are sign-extended varints
	return true, err
}

// parseSPModel decodes a tokenizer.model.
func parseSPModel(b []byte) (*spModel, error) {
	// proto2 defaults of the fields read.
	m := &spModel{modelType: 1, unkID: 0, bosID: 1, eosID: 2, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true}
	err := fields(b, func(w *wire, f, t int) (bool, error) {
		if t != 2 {
			return false, nil
		}
		switch f {
		case 1: // pieces
			msg, err := w.bytes()
			if err != nil {
				return true, err
			}
			p := spPiece{typ: pieceNormal}
			err = fields(msg, func(w *wire, f, t int) (bool, error) {
				switch {
				case f == 1 && t == 2:
					s, err := w.bytes()
					p.piece = string(s)
					return true, err
				case f == 2 && t == 5:
					if w.off+4 > len(w.b) {
						return true, fmt.Errorf("%w: truncated score", ErrModel)
					}
					p.score = math.Float32frombits(binary.LittleEndian.Uint32(w.b[w.off:]))
					w.off += 4
					return true, nil
				case f == 3:
					return intField(w, t, &p.typ)
				}
				return false, nil
			})
			m.pieces = append(m.pieces, p)
			return true, err
		case 2: // trainer_spec
			msg, err := w.bytes()
			if err != nil {
				return true, err
			}
			return true, fields(msg, func(w *wire, f, t int) (bool, error) {
				switch f {
				case 3:
					return intField(w, t, &m.modelType)
				case 24:
					return boolField(w, t, &m.treatWhitespaceAsSuffix)
				case 35:
					return boolField(w, t, &m.byteFallback)
				case 40:
					return intField(w, t, &m.unkID)
				case 41:
					return intField(w, t, &m.bosID)
				case 42:
					return intField(w, t, &m.eosID)
				}
				return false, nil
			})
		case 3: // normalizer_spec
			msg, err := w.bytes()
			if err != nil {
				return true, err
			}
			return true, fields(msg, func(w *wire, f, t int) (bool, error) {
				switch {
				case f == 1 && t == 2:
					s, err := w.bytes()
					m.normalizerName = string(s)
					return true, err
				case f == 2 && t == 2:
					s, err := w.bytes()
					m.charsMap = len(s) > 0
					return true, err
				case f == 3:
					return boolField(w, t, &m.addDummyPrefix)
				case f == 4:
					return boolField(w, t, &m.removeExtraWhitespaces)
				case f == 5:
					return boolField(w, t, &m.escapeWhitespaces)
				}
				return false, nil
			})
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if len(m.pieces) == 0 {
		return nil, fmt.Errorf("%w: no pieces", ErrModel)
	}
	return m, nil
}
