package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// checkConfigJSON checks a configuration file's JSON b (a --config file
// or a run's config.json) against config.json's keys before it is
// decoded, because encoding/json alone would let through what the user
// did not mean: it matches keys without regard to case ("LR" sets lr),
// keeps the last of a key given twice, takes null as "not given" (the
// recipe's value stays), and reports a fraction given for a count, or a
// number out of range, only as "a JSON number". So every key must be
// spelled as config.json spells it (or as docs/FORMATS.md says earlier
// files spelled it: the model's, the schedule's and the rates' CamelCase
// keys), appear once per object, and hold a value; a count must be a
// whole number in range, written in digits; a rates object needs its
// three rates, a schedule its ends and rates, a model its sizes (and a
// Llama its MLP width, rotary base and norm epsilon). Errors name the key
// by its path (schedule.rates[0].pl) and the position in b.
//
// A run's config.json (run) is estkit's own record of the shape it
// trained, so its model must also give padded, which a --config file's
// may leave to be derived (resolveShape).
//
// JSON that does not parse, or is not an object, is left to the decoder,
// which reports it by position.
func checkConfigJSON(b []byte, run bool) error {
	if !json.Valid(b) {
		return nil
	}
	w := &jsonWalker{b: b, dec: json.NewDecoder(bytes.NewReader(b)), run: run}
	w.dec.UseNumber()
	if start := w.next(); start >= len(b) || b[start] != '{' {
		return nil
	}
	return w.value("", reflect.TypeFor[ConfigFile]())
}

// jsonWalker reads a JSON value token by token beside the Go type it
// decodes into.
type jsonWalker struct {
	b    []byte
	dec  *json.Decoder
	last json.Token // the last value's token: a model's arch
	run  bool       // a run's config.json (checkConfigJSON)
}

// next is the offset in b of the next token: the decoder's offset moved
// past the white space and the separators before it.
func (w *jsonWalker) next() int {
	i := int(w.dec.InputOffset())
	for i < len(w.b) && strings.IndexByte(" \t\r\n,:", w.b[i]) >= 0 {
		i++
	}
	return i
}

func (w *jsonWalker) token() (json.Token, error) {
	t, err := w.dec.Token()
	if err != nil {
		return nil, jsonError(w.b, err) // b is valid JSON: not expected
	}
	return t, nil
}

// value checks the value that comes next, of the key path, against t.
func (w *jsonWalker) value(path string, t reflect.Type) error {
	start := w.next()
	tok, err := w.token()
	if err != nil {
		return err
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	w.last = tok
	switch x := tok.(type) {
	case nil:
		return fmt.Errorf("key %q: null%s: give a value, or leave the key out for its default", path, where(w.b, int64(start)))
	case json.Number:
		return checkNumber(path, t, string(x), where(w.b, int64(start)))
	case json.Delim:
		switch {
		case x == '{' && t.Kind() == reflect.Struct:
			return w.object(path, t, start)
		case x == '[' && t.Kind() == reflect.Slice:
			for i := 0; w.dec.More(); i++ {
				if err := w.value(fmt.Sprintf("%s[%d]", path, i), t.Elem()); err != nil {
					return err
				}
			}
			_, err := w.token() // ]
			return err
		}
		return w.skip() // of the wrong kind: the decoder names it
	}
	return nil // a string or a boolean: the decoder checks its kind and name
}

// skip reads past the rest of an object or array whose opening delimiter
// was read.
func (w *jsonWalker) skip() error {
	for depth := 1; depth > 0; {
		tok, err := w.token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// object checks an object's keys against the struct t (the opening brace,
// at start, was read).
func (w *jsonWalker) object(path string, t reflect.Type, start int) error {
	s := schemaOf(t)
	type seen struct {
		as  string
		off int
	}
	got := map[string]seen{}
	arch := ""
	for w.dec.More() {
		off := w.next()
		tok, err := w.token()
		if err != nil {
			return err
		}
		k := tok.(string) // b is valid JSON: an object's tokens alternate key and value
		f, ok := s.fields[k]
		if !ok {
			msg := fmt.Sprintf("unknown key %q%s", join(path, k), where(w.b, int64(off)))
			for name, f := range s.fields {
				if strings.EqualFold(name, k) && name == f.key {
					msg += fmt.Sprintf(" (keys are matched exactly: %q)", join(path, name))
				}
			}
			return errors.New(msg)
		}
		if first, dup := got[f.key]; dup {
			if first.as == k {
				return fmt.Errorf("key %q given twice,%s and%s", join(path, f.key), where(w.b, int64(first.off)), where(w.b, int64(off)))
			}
			return fmt.Errorf("key %q given twice, as %q%s and as %q%s", join(path, f.key), first.as, where(w.b, int64(first.off)), k, where(w.b, int64(off)))
		}
		got[f.key] = seen{k, off}
		if err := w.value(join(path, f.key), f.t); err != nil {
			return err
		}
		if t == reflect.TypeFor[ModelConfig]() && f.key == "arch" {
			arch, _ = w.last.(string)
		}
	}
	if _, err := w.token(); err != nil { // }
		return err
	}
	need := s.required
	if t == reflect.TypeFor[ModelConfig]() && w.run {
		need = append(need[:len(need):len(need)], "padded")
	}
	if t == reflect.TypeFor[ModelConfig]() && arch == llamaFamily.Arch {
		need = append(need[:len(need):len(need)], "ff", "rope_theta", "norm_eps")
	}
	for _, k := range need {
		if _, ok := got[k]; !ok {
			what := ""
			if arch == llamaFamily.Arch && (k == "ff" || k == "rope_theta" || k == "norm_eps") {
				what = " (a llama model needs it)"
			}
			return fmt.Errorf("key %q%s has no %q%s", path, where(w.b, int64(start)), k, what)
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// checkNumber checks a number given for a field of type t: a count must be
// a whole number in its type's range, in digits (encoding/json decodes
// neither 2.5 nor 1e9 into an int), and a float must be finite in float64.
func checkNumber(path string, t reflect.Type, s, at string) error {
	var lo, hi float64 // the range of the integer kind, as float64: [lo, hi)
	var span string    // and as the message gives it
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return nil
		}
		lo, hi, span = -0x1p63, 0x1p63, fmt.Sprintf("%d to %d", math.MinInt64, math.MaxInt64)
	case reflect.Uint64:
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return nil
		}
		lo, hi, span = 0, 0x1p64, fmt.Sprintf("0 to %d", uint64(math.MaxUint64))
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && math.IsInf(f, 0) {
			return fmt.Errorf("key %q: %s is out of range%s (a finite number up to %g)", path, s, at, math.MaxFloat64)
		}
		if err == nil && underflows(s, f) {
			return fmt.Errorf("key %q: %s underflows%s: %s", path, s, at, underflowWant)
		}
		return nil
	default:
		return nil // not a number's field: the decoder names it
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil && !math.IsInf(f, 0):
		return fmt.Errorf("key %q: %s is not a number%s", path, s, at)
	case f < lo || f >= hi:
		return fmt.Errorf("key %q: %s is out of range%s (want a whole number from %s)", path, s, at, span)
	case f != math.Trunc(f):
		return fmt.Errorf("key %q: %s is not a whole number%s", path, s, at)
	}
	return fmt.Errorf("key %q: %s%s: write a whole number in digits (%.0f)", path, s, at, f)
}

// underflows says whether s, a number that parsed as f, is a nonzero
// number whose nearest float64 is 0 (1e-400): strconv reports overflow
// but not this, and a silent 0 means something else (lr 0, no clipping).
// A zero however written (0, -0, 0.0e5, 0x0p0) does not underflow.
func underflows(s string, f float64) bool {
	if f != 0 {
		return false
	}
	m := strings.TrimLeft(s, "+-")
	digits, exp := "123456789", "eE"
	if len(m) > 1 && m[0] == '0' && (m[1] == 'x' || m[1] == 'X') {
		m, digits, exp = m[2:], "123456789abcdefABCDEF", "pP"
	}
	if i := strings.IndexAny(m, exp); i >= 0 {
		m = m[:i] // the mantissa: a nonzero digit there is a nonzero number
	}
	return strings.ContainsAny(m, digits)
}

// ParseFloat reads the text of a float setting as estkit's flags read it:
// a number beyond float64 is ±Inf, for the checks to refuse by name, and
// a nonzero number that rounds to 0 is refused here (underflows).
func ParseFloat(s string) (float64, error) {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("want a number")
	}
	if underflows(s, x) { // out of range as 1e400 is, at the other end
		return 0, fmt.Errorf("%s underflows: %s", s, underflowWant)
	}
	if x == 0 {
		return 0, nil // -0 is 0: recorded as 0, and keying a shard set as 0 does
	}
	return x, nil
}

// underflowWant is what an underflowing number is told to be instead.
var underflowWant = fmt.Sprintf("it is not 0, but rounds to 0 in float64, whose smallest magnitude above 0 is %g (write 0 for zero)", math.SmallestNonzeroFloat64)

// jsonSchema is the keys of an object that decodes into a struct.
type jsonSchema struct {
	fields   map[string]jsonField // by every accepted spelling
	required []string
}

type jsonField struct {
	key string // config.json's spelling
	t   reflect.Type
}

// legacyKeys are the structs whose fields earlier config.json files
// named in CamelCase, by their Go names (docs/FORMATS.md): the model
// shape, and the schedule and its rates (but for realised_rates, which
// is computed, not read).
var legacyKeys = map[reflect.Type]bool{reflect.TypeFor[ModelConfig](): true, reflect.TypeFor[Schedule](): true, reflect.TypeFor[Rates](): true}

// requiredKeys are the keys an object of the type must give: without
// them it decodes to zeros, which Check can report only as a value of 0
// ("rate 0"), not as the key left out. A Llama model's further ones are
// added by object.
var requiredKeys = map[reflect.Type][]string{
	reflect.TypeFor[ModelConfig](): {"vocab", "layers", "heads", "channels", "max_t"}, // and padded in a run's config.json (checkConfigJSON); a --config file's is derived when left out (resolveShape)
	reflect.TypeFor[Schedule]():    {"ends", "rates"},
	reflect.TypeFor[Rates]():       {"ph", "pm", "pl"},
}

var schemas sync.Map // reflect.Type → *jsonSchema

// schemaOf is the schema of a struct type: its fields by their json
// names, those of embedded structs with no name of their own promoted,
// as encoding/json does.
func schemaOf(t reflect.Type) *jsonSchema {
	if s, ok := schemas.Load(t); ok {
		return s.(*jsonSchema)
	}
	s := &jsonSchema{fields: map[string]jsonField{}, required: requiredKeys[t]}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for k, v := range schemaOf(f.Type).fields {
				s.fields[k] = v
			}
			continue
		case name == "":
			name = f.Name
		}
		s.fields[name] = jsonField{name, f.Type}
		if legacyKeys[t] && name != "realised_rates" {
			s.fields[f.Name] = jsonField{name, f.Type}
		}
	}
	schemas.Store(t, s)
	return s
}
