package train

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// llamaModel is a Llama shape in config.json's keys, without the closing
// brace so that a case can add or leave out keys.
const llamaModel = `"model": {"arch": "llama", "vocab": 100, "padded": 128, "layers": 2, "heads": 2, "kv_heads": 1, "channels": 16, "ff": 40, "max_t": 32`

// checkRefused resolves each --config text (with --data d and the extra
// settings) and wants ErrConfig with every one of the wanted texts in the
// message, the file's name among them, and nothing of Go's names.
func checkRefused(t *testing.T, cases []struct{ name, text, extra, want string }) {
	t.Helper()
	for _, c := range cases {
		file := writeFile(t, "c.json", c.text)
		set := []string{"config", file, "data", "d"}
		if c.extra != "" {
			set = append(set, strings.Fields(c.extra)...)
		}
		_, err := resolve(t, set...)
		if err == nil {
			t.Errorf("%s: %s accepted", c.name, c.text)
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ErrConfig) || !strings.Contains(msg, file) {
			t.Errorf("%s: %v (want ErrConfig naming %s)", c.name, err, file)
		}
		for _, w := range strings.Split(c.want, "|") {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %s: %v (want it to say %s)", c.name, c.text, err, w)
			}
		}
		for _, goName := range []string{"Go struct", "plain", "{Arch:", "RopeTheta:", "a JSON number"} {
			if strings.Contains(msg, goName) {
				t.Errorf("%s: %v (names Go's %q)", c.name, err, goName)
			}
		}
	}
}

// TestConfigKeysExact: a --config file's keys are matched exactly as
// config.json spells them (encoding/json alone matches them without case),
// the CamelCase spellings docs/FORMATS.md lists for earlier files aside,
// and a key given twice is refused with its position, also when its two
// spellings differ.
func TestConfigKeysExact(t *testing.T) {
	checkRefused(t, []struct{ name, text, extra, want string }{
		{"upper lr", `{"LR": 0.01}`, "", `unknown key "LR"|line 1, column 2|"lr"`},
		{"title clip", `{"Clip": 0}`, "", `unknown key "Clip"`},
		{"upper steps", `{"STEPS": 3}`, "", `unknown key "STEPS"`},
		{"sampler key", `{"sampler": {"Layer_Mode": "bernoulli"}}`, "", `unknown key "sampler.Layer_Mode"|line 1, column 14`},
		{"data key", `{"data": [{"Dir": "x"}]}`, "", `unknown key "data[0].Dir"`},
		{"model any case", `{` + strings.Replace(llamaModel, `"vocab"`, `"VOCAB"`, 1) + `, "rope_theta": 1e4, "norm_eps": 1e-5}}`, "", `unknown key "model.VOCAB"`},
		{"rates any case", `{"est": "custom", "schedule": {"ends": [5], "rates": [{"Ph": 1, "pm": 1, "pl": 1}]}}`, "", `unknown key "schedule.rates[0].Ph"`},
		{"realised CamelCase", `{"est": "custom", "schedule": {"ends": [5], "rates": [{"ph": 1, "pm": 1, "pl": 1}], "Realised": []}}`, "", `unknown key "schedule.Realised"`},
		{"twice", `{"lr": 0.001, "lr": 0.002}`, "", `key "lr" given twice|line 1, column 15|line 1, column 2`},
		{"twice by case", `{"lr": 0.001, "LR": 0.002}`, "", `unknown key "LR"`},
		{"twice on lines", "{\n  \"steps\": 3,\n  \"clip\": 0,\n  \"steps\": 4\n}", "", `key "steps" given twice|line 4, column 3|line 2, column 3`},
		{"twice in sampler", `{"sampler": {"group": 1, "group": 2}}`, "", `key "sampler.group" given twice`},
		{"twice in data", `{"data": [{"dir": "a", "dir": "b"}]}`, "", `key "data[0].dir" given twice`},
		{"twice in rates", `{"est": "custom", "schedule": {"ends": [5], "rates": [{"ph": 1, "pm": 1, "pl": 1, "pl": 0.5}]}}`, "", `key "schedule.rates[0].pl" given twice`},
		{"twice by legacy name", `{` + llamaModel + `, "rope_theta": 1e4, "norm_eps": 1e-5, "RopeTheta": 500}}`, "seq 16", `key "model.rope_theta" given twice|"RopeTheta"`},
		{"twice by legacy rates", `{"est": "custom", "schedule": {"ends": [5], "rates": [{"ph": 1, "pm": 1, "pl": 1, "PL": 0.5}]}}`, "", `key "schedule.rates[0].pl" given twice`},
		{"format twice", `{"format": "estkit.run", "version": 1, "format": "estkit.run"}`, "", `key "format" given twice`},
	})

	// the spellings earlier config.json files carried still resolve
	for name, text := range map[string]string{
		"CamelCase model":    `{"model": {"Arch": "llama", "Vocab": 100, "Padded": 128, "Layers": 2, "Heads": 2, "KVHeads": 1, "Channels": 16, "FF": 40, "MaxT": 32, "RopeTheta": 10000, "NormEps": 1e-5}}`,
		"CamelCase schedule": `{"est": "custom", "schedule": {"Ends": [5], "Rates": [{"PH": 1, "PM": 1, "PL": 1}]}}`,
		"realised rates":     `{"est": "custom", "schedule": {"ends": [5], "rates": [{"ph": 1, "pm": 1, "pl": 1}], "realised_rates": [{"ph": 1, "pm": 1, "pl": 1}]}}`,
	} {
		if _, err := resolve(t, "config", writeFile(t, "c.json", text), "data", "d", "seq", "16"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// and a run's config.json as runs wrote it
	if _, err := resolve(t, "config", filepath.Join("testdata", "config-v1-flat.json")); err != nil {
		t.Errorf("config-v1-flat.json: %v", err)
	}

	// a run's config.json with a key given twice is refused by --resume
	// and every reader of a run, by name and position
	cfg, err := resolve(t, "data", "d")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := configBytes(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	dup := strings.Replace(string(b), `"clip": 1,`, `"clip": 1, "clip": 0,`, 1)
	if dup == string(b) {
		t.Fatal("no clip in config.json")
	}
	if err := os.WriteFile(path, []byte(dup), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRunConfig(dir); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `key "clip" given twice`) {
		t.Errorf("a run's config.json with clip twice: %v", err)
	}
}

// TestConfigNull: null is no value: a key given as null is refused by
// name, not taken as "not given".
func TestConfigNull(t *testing.T) {
	checkRefused(t, []struct{ name, text, extra, want string }{
		{"lr", `{"lr": null}`, "", `key "lr": null|line 1, column 8`},
		{"sampler", `{"sampler": null}`, "", `key "sampler": null`},
		{"model with preset", `{"model": null}`, "preset gpt2-tiny", `key "model": null`},
		{"model", `{"model": null}`, "", `key "model": null`},
		{"schedule", `{"est": "off", "schedule": null}`, "", `key "schedule": null`},
		{"data", `{"data": null}`, "", `key "data": null`},
		{"data entry", `{"data": [null]}`, "", `key "data[0]": null`},
		{"sampler field", `{"sampler": {"group": null}}`, "", `key "sampler.group": null`},
		{"stage end", `{"est": "custom", "schedule": {"ends": [1, null], "rates": [{"ph": 1, "pm": 1, "pl": 1}, {"ph": 1, "pm": 1, "pl": 1}]}}`, "", `key "schedule.ends[1]": null`},
		{"model field", `{` + llamaModel + `, "rope_theta": null, "norm_eps": 1e-5}}`, "seq 16", `key "model.rope_theta": null`},
		{"preset", `{"preset": null}`, "", `key "preset": null`},
	})
}

// TestConfigValueMessages: a value of the wrong kind of number, a missing
// key of an object that needs it, a byte order mark and a float32 range
// are each reported by the key and what is wrong.
func TestConfigValueMessages(t *testing.T) {
	checkRefused(t, []struct{ name, text, extra, want string }{
		{"fraction", `{"steps": 2.5}`, "", `key "steps": 2.5 is not a whole number|line 1, column 11`},
		{"exponent", `{"horizon": 1e9}`, "", `key "horizon": 1e9|1000000000`},
		{"too large", `{"steps": 1e30}`, "", `key "steps": 1e30 is out of range`},
		{"too large digits", `{"warmup": 99999999999999999999}`, "", `key "warmup": 99999999999999999999 is out of range`},
		{"negative seed", `{"seed": -1}`, "", `key "seed": -1 is out of range`},
		{"float overflow", `{"lr": 1e999}`, "", `key "lr": 1e999 is out of range`},
		{"model fraction", `{` + strings.Replace(llamaModel, `"layers": 2`, `"layers": 2.5`, 1) + `, "rope_theta": 1e4, "norm_eps": 1e-5}}`, "seq 16", `key "model.layers": 2.5 is not a whole number`},
		{"no pl", `{"est": "custom", "schedule": {"ends": [5], "rates": [{"ph": 1, "pm": 1}]}}`, "", `key "schedule.rates[0]"|no "pl"`},
		{"no ends", `{"est": "custom", "schedule": {"rates": [{"ph": 1, "pm": 1, "pl": 1}]}}`, "", `key "schedule"|no "ends"`},
		{"no rope_theta", `{` + llamaModel + `, "norm_eps": 1e-5}}`, "seq 16", `key "model"|no "rope_theta"`},
		{"no vocab", `{"model": {"padded": 64, "layers": 1, "heads": 1, "channels": 8, "max_t": 8}}`, "", `key "model"|no "vocab"`},
		{"rope_theta 0", `{` + llamaModel + `, "rope_theta": 0, "norm_eps": 1e-5}}`, "seq 16", `model.rope_theta`},
		{"ff 0", `{` + llamaModel + `, "rope_theta": 1e4, "norm_eps": 1e-5, "ff": 0}}`, "seq 16", `model.ff`},
	})

	// a UTF-8 byte order mark (some editors write one) is read past
	cfg, err := resolve(t, "config", writeFile(t, "bom.json", "\ufeff{\"lr\": 1e-3}"), "data", "d")
	if err != nil || cfg.LR != 1e-3 {
		t.Errorf("a file with a byte order mark: lr %g, %v", cfg.LR, err)
	}

	// the float32 floor: 0 is offered only where 0 is a value
	for _, c := range []struct{ name, value, want, not string }{
		{"eps", "1e-320", "eps = 1e-320: want at least 1.1754943508222875e-38", "0 or"},
		{"lr", "1e-320", "lr = 1e-320: want at least 1.1754943508222875e-38", "0 or"},
		{"min-lr", "1e-320", "min_lr = 1e-320: want 0 or at least 1.1754943508222875e-38", ""},
		{"weight-decay", "1e-320", "weight_decay = 1e-320: want 0 or at least 1.1754943508222875e-38", ""},
	} {
		_, err := resolve(t, "data", "d", c.name, c.value, "min-lr", "0") // min_lr 0: not a tenth of a tiny lr
		if c.name == "min-lr" {
			_, err = resolve(t, "data", "d", c.name, c.value)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || c.not != "" && strings.Contains(err.Error(), c.not) {
			t.Errorf("--%s %s: %v (want %q)", c.name, c.value, err, c.want)
		}
	}
}
