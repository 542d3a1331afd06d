package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPresetsPadVocab: every preset's padded vocabulary is its vocabulary
// rounded up as paddedVocab rounds it, the rule a --config model without
// "padded" gets.
func TestPresetsPadVocab(t *testing.T) {
	for name, p := range Presets {
		if got := paddedVocab(p.Vocab); got != p.Padded {
			t.Errorf("%s: paddedVocab(%d) = %d, the preset has %d", name, p.Vocab, got, p.Padded)
		}
	}
}

// TestConfigFilePadded: a --config model without "padded" gets its
// vocabulary padded as the presets pad it; one that gives it keeps it as
// given, and a value that is no padded vocabulary (0, negative, below
// vocab) is refused naming the file and model.padded, never replaced.
func TestConfigFilePadded(t *testing.T) {
	for _, c := range []struct {
		name   string
		model  string // the keys after vocab
		vocab  int
		padded int    // want; 0: an error
		err    string // in the error
	}{
		{"absent, GPT-2's vocabulary", ``, 50257, 50304, ""},
		{"absent, Llama's vocabulary", ``, 32000, 32000, ""},
		{"absent, a small vocabulary", ``, 1000, 1024, ""},
		{"absent, a vocabulary of one", ``, 1, 128, ""},
		{"absent, CamelCase vocab", ``, 0, 50304, ""},
		{"explicit, rounded", `, "padded": 50304`, 50257, 50304, ""},
		{"explicit, the vocabulary itself", `, "padded": 50257`, 50257, 50257, ""},
		{"explicit, odd", `, "padded": 50300`, 50257, 50300, ""},
		{"explicit CamelCase", `, "Padded": 50260`, 50257, 50260, ""},
		{"explicit 0", `, "padded": 0`, 50257, 0, "model.padded = 0"},
		{"explicit negative", `, "padded": -64`, 50257, 0, "model.padded = -64"},
		{"explicit below vocab", `, "padded": 1000`, 50257, 0, "model.padded = 1000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vocab := fmt.Sprintf(`"vocab": %d`, c.vocab)
			if c.vocab == 0 {
				vocab = `"Vocab": 50257`
			}
			file := writeFile(t, "m.json", `{"data": [{"dir": "d"}], "seq": 16, "model": {`+vocab+c.model+`, "layers": 1, "heads": 2, "channels": 16, "max_t": 16}}`)
			cfg, err := resolve(t, "config", file)
			if c.padded == 0 {
				if err == nil {
					t.Fatalf("accepted: padded %d", cfg.Model.Padded)
				}
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("%v: want ErrConfig naming %s and %q", err, file, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Model.Padded != c.padded {
				t.Fatalf("padded %d, want %d", cfg.Model.Padded, c.padded)
			}
		})
	}
}

// TestRunConfigNeedsPadded: a run's config.json whose model has no
// "padded" (hand-edited, cut) is refused naming the missing key, as
// estkit writes it, while a --config file's model may leave it out to be
// derived (TestConfigFilePadded): it is not read as "model.padded = 0", a
// value the file does not hold.
func TestRunConfigNeedsPadded(t *testing.T) {
	_, run := checkpointedRun(t, 2, 1, 3) // step-00000001 and step-00000002, latest naming the second
	path := filepath.Join(run, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := regexp.MustCompile(`(?m)^\s*"padded": \d+,\n`).ReplaceAll(b, nil)
	if len(cut) == len(b) {
		t.Fatal("config.json has no padded line to cut")
	}
	if err := os.WriteFile(path, cut, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadRunConfig(run)
	if err == nil {
		t.Fatal("a config.json without model.padded was read")
	}
	if strings.Contains(err.Error(), "padded = 0") || !strings.Contains(err.Error(), `no "padded"`) {
		t.Errorf("error %q: want it to say the model has no \"padded\", not that padded is 0", err)
	}
}
