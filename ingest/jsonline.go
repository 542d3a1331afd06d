package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// A strict, allocation-light reader of one JSON object per line that pulls
// out the values at a few dotted paths and validates the rest.
//
// Why our own: encoding/json was 35% of ingest's CPU (docs/PERF.md), and its
// struct decoding matches keys case-insensitively ({"Text": ...} would count
// as "text"); valyala/fastjson unescapes leniently (lone surrogates and bad
// escapes pass through as text). This reader accepts exactly what
// encoding/json accepts (RFC 8259; nesting up to 10000 deep), matches keys
// exactly, lets the last of duplicate keys win and decodes strings as
// encoding/json does (a lone surrogate becomes U+FFFD); FuzzJSONLineDiff
// checks it against encoding/json. The caller has checked the line is valid
// UTF-8.

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

var errNotObject = errors.New("not a JSON object")

// jsonPaths are the dotted paths wanted from a line, split into keys.
type jsonPaths [][]string

// span is a value found at a wanted path: raw[start:end] of the line, and
// whether it is a string (then start and end include the quotes).
type span struct {
	start, end int
	isString   bool
	found      bool
}

type jsonScanner struct {
	s     []byte
	i     int
	paths jsonPaths
	found []span
}

// scanJSONLine validates line as one JSON object and returns, for each
// path, the span of its value (found false when absent).
func scanJSONLine(line []byte, paths jsonPaths, found []span) error {
	sc := jsonScanner{s: line, paths: paths, found: found}
	for k := range found {
		found[k] = span{}
	}
	sc.ws()
	if sc.i >= len(sc.s) || sc.s[sc.i] != '{' {
		if sc.i < len(sc.s) {
			if err := sc.value(0, nil); err != nil {
				return err
			}
			sc.ws()
			if sc.i < len(sc.s) {
				return sc.errorf("after top-level value")
			}
			return errNotObject
		}
		return sc.errorf("unexpected end of JSON input")
	}
	if err := sc.value(0, []string{}); err != nil {
		return err
	}
	sc.ws()
	if sc.i < len(sc.s) {
		return sc.errorf("after top-level value")
	}
	return nil
}

func (sc *jsonScanner) errorf(what string) error {
	if sc.i >= len(sc.s) {
		return fmt.Errorf("unexpected end of JSON input")
	}
	return fmt.Errorf("invalid character %q %s (byte %d)", sc.s[sc.i], what, sc.i)
}

func (sc *jsonScanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// value scans one value. path is the key path to it when some wanted path
// may lie at or below it, else nil.
func (sc *jsonScanner) value(depth int, path []string) error {
	if sc.i >= len(sc.s) {
		return sc.errorf("")
	}
	start := sc.i
	isString := false
	switch c := sc.s[sc.i]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return fmt.Errorf("exceeded max depth")
		}
		if err := sc.object(depth+1, path); err != nil {
			return err
		}
	case c == '[':
		if depth >= maxJSONDepth {
			return fmt.Errorf("exceeded max depth")
		}
		if err := sc.array(depth + 1); err != nil {
			return err
		}
	case c == '"':
		if err := sc.str(); err != nil {
			return err
		}
		isString = true
	case c == '-' || c >= '0' && c <= '9':
		if err := sc.number(); err != nil {
			return err
		}
	case c == 't':
		if err := sc.literal("true"); err != nil {
			return err
		}
	case c == 'f':
		if err := sc.literal("false"); err != nil {
			return err
		}
	case c == 'n':
		if err := sc.literal("null"); err != nil {
			return err
		}
	default:
		return sc.errorf("looking for beginning of value")
	}
	if path != nil {
		for k, p := range sc.paths {
			if equalPath(p, path) {
				sc.found[k] = span{start: start, end: sc.i, isString: isString, found: true} // a later duplicate wins
			}
		}
	}
	return nil
}

func equalPath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// wantsBelow reports whether a wanted path goes through path plus key.
func (sc *jsonScanner) wantsBelow(path []string, key string) bool {
	for _, p := range sc.paths {
		if len(p) > len(path) && p[len(path)] == key && equalPath(p[:len(path)], path) {
			return true
		}
	}
	return false
}

func (sc *jsonScanner) object(depth int, path []string) error {
	sc.i++ // '{'
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		return nil
	}
	for {
		sc.ws()
		if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
			return sc.errorf("looking for beginning of object key string")
		}
		ks := sc.i
		if err := sc.str(); err != nil {
			return err
		}
		var sub []string
		if path != nil {
			key, ok := rawKey(sc.s[ks+1 : sc.i-1])
			if !ok {
				key = decodeJSONString(sc.s[ks:sc.i])
			}
			if sc.wantsBelow(path, key) {
				sub = append(path[:len(path):len(path)], key)
				// A duplicate key replaces the whole earlier value, as in
				// encoding/json: forget what was found inside it.
				for k, p := range sc.paths {
					if len(p) >= len(sub) && equalPath(p[:len(sub)], sub) {
						sc.found[k] = span{}
					}
				}
			}
		}
		sc.ws()
		if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
			return sc.errorf("after object key")
		}
		sc.i++
		sc.ws()
		if err := sc.value(depth, sub); err != nil {
			return err
		}
		if done, err := sc.separator('}', "after object key:value pair"); done || err != nil {
			return err
		}
	}
}

// separator reads what follows a member of an object or array: ',' (more
// follow) or the closing byte (done).
func (sc *jsonScanner) separator(closing byte, where string) (done bool, err error) {
	sc.ws()
	if sc.i >= len(sc.s) {
		return false, sc.errorf("")
	}
	switch sc.s[sc.i] {
	case ',':
		sc.i++
		return false, nil
	case closing:
		sc.i++
		return true, nil
	}
	return false, sc.errorf(where)
}

// rawKey returns a key without escapes as is.
func rawKey(b []byte) (string, bool) {
	for _, c := range b {
		if c == '\\' {
			return "", false
		}
	}
	return string(b), true
}

func (sc *jsonScanner) array(depth int) error {
	sc.i++ // '['
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
		sc.i++
		return nil
	}
	for {
		sc.ws()
		if err := sc.value(depth, nil); err != nil {
			return err
		}
		if done, err := sc.separator(']', "after array element"); done || err != nil {
			return err
		}
	}
}

// str scans a string token starting at its opening quote.
func (sc *jsonScanner) str() error {
	sc.i++
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '"':
			sc.i++
			return nil
		case c == '\\':
			sc.i++
			if sc.i >= len(sc.s) {
				return sc.errorf("")
			}
			switch sc.s[sc.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				sc.i++
			case 'u':
				sc.i++
				for k := 0; k < 4; k++ {
					if sc.i >= len(sc.s) || !isHex(sc.s[sc.i]) {
						return sc.errorf("in \\u hexadecimal character escape")
					}
					sc.i++
				}
			default:
				return sc.errorf("in string escape code")
			}
		case c < 0x20:
			return sc.errorf("in string literal")
		default:
			sc.i++
		}
	}
	return sc.errorf("")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (sc *jsonScanner) number() error {
	s := sc.s
	if s[sc.i] == '-' {
		sc.i++
	}
	digits := func() int {
		n := 0
		for sc.i < len(s) && s[sc.i] >= '0' && s[sc.i] <= '9' {
			sc.i++
			n++
		}
		return n
	}
	switch {
	case sc.i < len(s) && s[sc.i] == '0':
		sc.i++
	case sc.i < len(s) && s[sc.i] >= '1' && s[sc.i] <= '9':
		digits()
	default:
		return sc.errorf("in numeric literal")
	}
	if sc.i < len(s) && s[sc.i] == '.' {
		sc.i++
		if digits() == 0 {
			return sc.errorf("after decimal point in numeric literal")
		}
	}
	if sc.i < len(s) && (s[sc.i] == 'e' || s[sc.i] == 'E') {
		sc.i++
		if sc.i < len(s) && (s[sc.i] == '+' || s[sc.i] == '-') {
			sc.i++
		}
		if digits() == 0 {
			return sc.errorf("in exponent of numeric literal")
		}
	}
	return nil
}

func (sc *jsonScanner) literal(lit string) error {
	for k := 0; k < len(lit); k++ {
		if sc.i >= len(sc.s) || sc.s[sc.i] != lit[k] {
			return sc.errorf("in literal " + lit)
		}
		sc.i++
	}
	return nil
}

// decodeJSONString decodes a scanned string token (with its quotes) as
// encoding/json does: escapes resolved, surrogate pairs joined, a lone
// surrogate replaced by U+FFFD. Runs between escapes are copied whole.
func decodeJSONString(tok []byte) string {
	b := tok[1 : len(tok)-1]
	esc := bytes.IndexByte(b, '\\')
	if esc < 0 {
		return string(b) // the common case for keys and metadata: one copy
	}
	out := make([]byte, 0, len(b))
	for {
		out = append(out, b[:esc]...)
		b = b[esc:]
		n := 2 // bytes of this escape
		switch b[1] {
		case '"', '\\', '/':
			out = append(out, b[1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(b[2:6])
			n = 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(b[8:12]))
				}
				if r2 != utf8.RuneError {
					r, n = r2, 12
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		}
		b = b[n:]
		if esc = bytes.IndexByte(b, '\\'); esc < 0 {
			out = append(out, b...)
			break
		}
	}
	// out is never written again: hand its bytes to the string without
	// another copy.
	return unsafe.String(unsafe.SliceData(out), len(out))
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
