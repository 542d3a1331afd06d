package train

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// zeroTaking are the float settings whose 0 is a value of their own.
var zeroTaking = map[string]bool{"min-lr": true, "beta1": true, "beta2": true, "weight-decay": true, "clip": true}

// TestFloatUnderflowRefused: a number that is not zero but whose float64
// is (1e-400) is refused naming the flag, or the file and key, as a
// number beyond float64 is; every float flag and every float key of a
// --config file is checked. A zero however written stays the zero it was
// where zero is accepted.
func TestFloatUnderflowRefused(t *testing.T) {
	var floats []string
	for _, o := range Settings() {
		if o.Kind == "float" {
			floats = append(floats, o.Name)
		}
	}
	if len(floats) < 7 {
		t.Fatalf("float settings %v: expected lr, min-lr, beta1, beta2, eps, weight-decay, clip at least", floats)
	}
	for _, name := range floats {
		key := strings.ReplaceAll(name, "-", "_")
		for _, v := range []string{"1e-400", "-1e-400", "+1e-400", "0.0000001e-330", "0x1p-2000", "4.9e-325"} {
			_, err := resolve(t, "data", "d", name, v)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--"+name) || !strings.Contains(err.Error(), "underflows") {
				t.Errorf("--%s %s: %v (want ErrConfig naming --%s, saying it underflows)", name, v, err, name)
			}
			if strings.HasPrefix(v, "+") || strings.HasPrefix(v, "0x") {
				continue // not JSON
			}
			file := writeFile(t, "u.json", `{"data": [{"dir": "d"}], "`+key+`": `+v+`}`)
			_, err = resolve(t, "config", file)
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `"`+key+`"`) || !strings.Contains(err.Error(), "underflows") {
				t.Errorf("%q: %s in a file: %v (want ErrConfig naming the file and key, saying it underflows)", key, v, err)
			}
		}
		if !zeroTaking[name] {
			continue
		}
		for _, v := range []string{"0", "0.0", "0e5", "-0", "0.000e-999", "00.00", "0x0p-9"} {
			cfg, err := resolve(t, "data", "d", name, v)
			if err != nil {
				t.Errorf("--%s %s: %v", name, v, err)
				continue
			}
			if got := map[string]float64{"min-lr": cfg.MinLR, "beta1": cfg.Beta1, "beta2": cfg.Beta2, "weight-decay": cfg.WeightDecay, "clip": cfg.Clip}[name]; math.Float64bits(got) != 0 {
				t.Errorf("--%s %s became %v, not 0", name, v, got) // -0 too: config.json records it, and shard keys a set by it
			}
			if strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "00") {
				continue // not JSON
			}
			if _, err := resolve(t, "config", writeFile(t, "z.json", `{"data": [{"dir": "d"}], "`+key+`": `+v+`}`)); err != nil {
				t.Errorf("%q: %s in a file: %v", key, v, err)
			}
		}
	}
	// a schedule's rates, given by flag and in a file
	_, err := resolve(t, "data", "d", "steps", "10", "est-stages", "5,10", "est-rates", "0.5:1e-400:1,1:1:1")
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--est-rates") || !strings.Contains(err.Error(), "underflows") {
		t.Errorf("--est-rates with 1e-400: %v", err)
	}
	file := writeFile(t, "s.json", `{"data": [{"dir": "d"}], "steps": 10, "est": "custom", "schedule": {"ends": [5, 10], "rates": [{"ph": 0.5, "pm": 1e-400, "pl": 1}, {"ph": 1, "pm": 1, "pl": 1}]}}`)
	_, err = resolve(t, "config", file)
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "schedule.rates[0].pm") || !strings.Contains(err.Error(), "underflows") {
		t.Errorf("a schedule rate of 1e-400 in a file: %v", err)
	}
	// a data set's weight
	_, err = resolve(t, "data", "d:1e-400")
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `--data "d:1e-400"`) || !strings.Contains(err.Error(), "underflows") {
		t.Errorf("--data d:1e-400: %v", err)
	}
}

// FuzzParseFloat: no text makes the float flags' reader panic; a number it
// accepts is strconv's (±Inf beyond float64, for the checks to refuse by
// name), with -0 read as 0, and it refuses only numbers that strconv reads
// as 0 although their digits are not all 0.
func FuzzParseFloat(f *testing.F) {
	for _, s := range []string{"1e-400", "-0", "0x1p-2000", "0e-999", "1_0", "1e400", "NaN", "-inf", ".5", "0x", "4.9e-324", "2.4e-324"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := ParseFloat(s)
		v, serr := strconv.ParseFloat(s, 64)
		if serr != nil && !errors.Is(serr, strconv.ErrRange) {
			if err == nil {
				t.Fatalf("%q: strconv refuses it (%v), ParseFloat read %v", s, serr, x)
			}
			return
		}
		switch {
		case err != nil && v != 0:
			t.Fatalf("%q: strconv reads %v, ParseFloat refused it: %v", s, v, err)
		case err != nil && !underflows(s, v):
			t.Fatalf("%q: a zero refused: %v", s, err)
		case err == nil && x != v && !(math.IsNaN(x) && math.IsNaN(v)):
			t.Fatalf("%q: ParseFloat read %v, strconv %v", s, x, v)
		case err == nil && math.Signbit(x) && x == 0:
			t.Fatalf("%q: read as -0, not 0", s)
		case err == nil && underflows(s, v):
			t.Fatalf("%q: a nonzero number read as 0", s)
		}
	})
}
