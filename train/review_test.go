package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
)

// rebuildSet builds the token set at dir again from its document set with
// another val fraction: the same directory, another set (another key).
func rebuildSet(t *testing.T, dir string) string {
	t.Helper()
	tok, err := tokenize.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	docs := filepath.Join(filepath.Dir(dir), "docs")
	res, err := shards.Build(context.Background(), tok, []string{docs}, shards.Options{OutDir: dir, EOS: true, ValFraction: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	m, err := shards.ReadManifest(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return m.Key
}

// TestDataRecordedByPathAndKey: a run records its data set's absolute
// path and manifest key; eval and resume after the set was rebuilt with
// other options refuse, naming the set and both keys; eval from another
// directory reads the run's set, not one of the same relative name there.
func TestDataRecordedByPathAndKey(t *testing.T) {
	set := tokenSet(t)
	t.Chdir(filepath.Dir(set))
	cfg, err := resolve(t, "data", "tok", "steps", "2", "batch", "2", "seq", "16", "eval-batches", "1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Model = ModelConfig{Vocab: 50257, Padded: 50304, Layers: 1, Heads: 2, Channels: 16, MaxT: 16}
	cfg.Preset = ""
	if cfg.Data[0].Dir != set {
		t.Fatalf("data recorded as %q, want the absolute %q", cfg.Data[0].Dir, set)
	}
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRunConfig(run)
	if err != nil {
		t.Fatal(err)
	}
	m, err := shards.ReadManifest(set)
	if err != nil {
		t.Fatal(err)
	}
	if got.Data[0].Dir != set || got.Data[0].Key != m.Key {
		t.Fatalf("config.json data %+v, want dir %s key %s", got.Data[0], set, m.Key)
	}
	// From another directory holding no tok, eval reads the run's set.
	t.Chdir(t.TempDir())
	model, rc, err := LoadRun(cpu.New(), run)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Eval(model, rc, shards.Val, 1); err != nil {
		t.Fatalf("eval from another directory: %v", err)
	}
	newKey := rebuildSet(t, set)
	if newKey == m.Key {
		t.Fatal("the rebuilt set has the old key")
	}
	_, _, err = Eval(model, rc, shards.Val, 1)
	if err == nil || !errors.Is(err, shards.ErrMismatch) || !strings.Contains(err.Error(), set) || !strings.Contains(err.Error(), m.Key) || !strings.Contains(err.Error(), newKey) {
		t.Fatalf("eval on a rebuilt set: %v", err)
	}
	rcfg, err := ResolveResume(run, []Setting{{Name: "steps", Value: "3"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cpu.New(), rcfg, run, Options{Resume: true})
	if err == nil || !errors.Is(err, shards.ErrMismatch) || !strings.Contains(err.Error(), set) || !strings.Contains(err.Error(), m.Key) || !strings.Contains(err.Error(), newKey) {
		t.Fatalf("resume on a rebuilt set: %v", err)
	}
}

// TestDataTwice: the same set twice in the mixture, by the same path, by
// two spellings of it, or as a copy with the same manifest key, is
// refused by name.
func TestDataTwice(t *testing.T) {
	set := tokenSet(t)
	t.Chdir(filepath.Dir(set))
	for _, pair := range [][2]string{{"tok", "tok"}, {"tok", set + "/"}, {"tok:1", "./tok:2"}} {
		_, err := resolve(t, "data", pair[0], "data", pair[1])
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), set) || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("--data %s --data %s: %v", pair[0], pair[1], err)
		}
	}
	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(set)); err != nil {
		t.Fatal(err)
	}
	cfg := tinyRun(set)
	cfg.Data = append(cfg.Data, Data{Dir: cp, Weight: 1})
	_, err := Run(context.Background(), cpu.New(), cfg, filepath.Join(t.TempDir(), "run"), Options{})
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), set) || !strings.Contains(err.Error(), cp) {
		t.Fatalf("a set and its copy: %v", err)
	}
}

// TestDiverged: a run whose loss or gradient norm stops being finite ends
// with an error naming the step, before anything of that step is recorded;
// every record written before it encodes.
func TestDiverged(t *testing.T) {
	set := tokenSet(t)
	for name, f := range map[string]func(c *Config){
		"lr 1e30": func(c *Config) { c.LR, c.MinLR, c.Clip = 1e30, 0, 0 },
		"lr 1e20": func(c *Config) { c.LR, c.MinLR, c.Clip = 1e20, 0, 0 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := tinyRun(set)
			cfg.EST, cfg.Schedule, cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery = "off", nil, 6, 0, 0
			f(&cfg)
			run := filepath.Join(t.TempDir(), "run")
			_, err := Run(context.Background(), cpu.New(), cfg, run, Options{})
			re := regexp.MustCompile(`(loss|gradient norm|val loss) is (NaN|[+-]Inf) at step (\d+): the run diverged`)
			mm := re.FindStringSubmatch(fmt.Sprint(err))
			if mm == nil || !strings.Contains(err.Error(), "--lr") {
				t.Fatalf("diverged run: %v", err)
			}
			step, _ := strconv.Atoi(mm[3])
			recs := records(t, filepath.Join(run, "metrics.jsonl"))
			if len(recs) != step {
				t.Fatalf("%d records, the error names step %d", len(recs), step)
			}
		})
	}
}

// TestFloat32Settings: optimizer settings that AdamW's float32 cannot
// hold as given (an lr that overflows, an eps that flushes to zero, a beta
// that rounds to 1) are configuration errors naming the setting, before
// anything runs (they used to end in NaN weights, or in a run whose only
// NaN sat in the padded vocabulary rows, depending on the BLAS).
func TestFloat32Settings(t *testing.T) {
	for name, f := range map[string]func(c *Config){
		"lr":    func(c *Config) { c.LR, c.MinLR = 1e308, 0 },
		"eps":   func(c *Config) { c.Eps = 1e-320 },
		"beta2": func(c *Config) { c.Beta2 = 1 - 1e-9 },
		"clip":  func(c *Config) { c.Clip = 1e39 },
	} {
		cfg := tinyRun("tok")
		f(&cfg)
		if err := cfg.Check(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestResumeSameSettings: the command that started a run, given again
// with --resume, resumes it: a setting --resume cannot change is refused
// only when its value differs from the run's, and then by name.
func TestResumeSameSettings(t *testing.T) {
	set := tokenSet(t)
	t.Chdir(filepath.Dir(set))
	file := writeFile(t, "c.json", `{"model": {"arch": "gpt2", "vocab": 50257, "padded": 50304, "layers": 1, "heads": 2, "channels": 16, "max_t": 16}, "lr": 1e-3, "steps": 2}`)
	orig := []string{"config", file, "data", "tok", "batch", "2", "seq", "16", "est", "off", "lr", "1e-3", "eval-batches", "1", "layer-mode", "fixed"}
	var set0 []Setting
	for i := 0; i < len(orig); i += 2 {
		set0 = append(set0, Setting{Name: orig[i], Value: orig[i+1]})
	}
	cfg, err := Resolve(set0)
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	again := append(slices.Clone(set0), Setting{Name: "steps", Value: "3"})
	again[1] = Setting{Name: "data", Value: "./tok"} // another spelling of the same set
	rc, err := ResolveResume(run, again)
	if err != nil {
		t.Fatalf("the same command with --resume: %v", err)
	}
	if rc.Steps != 3 {
		t.Fatalf("steps %d after --steps 3", rc.Steps)
	}
	if _, err := Run(context.Background(), cpu.New(), rc, run, Options{Resume: true}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, value string }{{"batch", "4"}, {"lr", "2e-3"}, {"data", "tok:2"}, {"est", "est-gpt2"}, {"preset", "gpt2-tiny"}} {
		given := slices.Clone(set0)
		if i := slices.IndexFunc(given, func(s Setting) bool { return s.Name == c.name }); i >= 0 {
			given[i].Value = c.value
		} else {
			given = append(given, Setting{Name: c.name, Value: c.value})
		}
		_, err := ResolveResume(run, given)
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--"+c.name+" ") {
			t.Fatalf("--resume --%s %s: %v", c.name, c.value, err)
		}
		if c.name != "batch" && strings.Contains(err.Error(), "--batch") {
			t.Fatalf("--resume --%s %s names --batch, which is unchanged: %v", c.name, c.value, err)
		}
	}
	other := writeFile(t, "d.json", `{"lr": 5e-3}`)
	if _, err := ResolveResume(run, []Setting{{Name: "config", Value: other}}); err == nil || !strings.Contains(err.Error(), "lr") {
		t.Fatalf("--resume --config with another lr: %v", err)
	}
}

// TestUserFilesInRun: files of the user's in a run directory (a log the
// user appends to, a note in a checkpoint) are tolerated by --resume and
// left by --overwrite, byte for byte; a run or set inside a run directory
// is refused, naming the run.
func TestUserFilesInRun(t *testing.T) {
	set := tokenSet(t)
	run := filepath.Join(t.TempDir(), "run")
	cfg := tinyRun(set)
	cfg.Steps, cfg.EST, cfg.Schedule = 3, "off", nil
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	user := map[string]string{"train.log": "step 1 ...\n", filepath.Join(ckptDir, "step-00000003", "notes.txt"): "good one\n", filepath.Join(ckptDir, "mine"): "x"}
	for name, text := range user {
		if err := os.WriteFile(filepath.Join(run, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string) {
		t.Helper()
		for name, text := range user {
			if b, err := os.ReadFile(filepath.Join(run, name)); err != nil || string(b) != text {
				t.Fatalf("%s: the user's %s changed or vanished: %q %v", what, name, b, err)
			}
		}
	}
	rc, err := ResolveResume(run, []Setting{{Name: "steps", Value: "4"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cpu.New(), rc, run, Options{Resume: true}); err != nil {
		t.Fatalf("resume beside the user's files: %v", err)
	}
	check("resume")
	short := tinyRun(set)
	short.Steps, short.EST, short.Schedule, short.Seed = 2, "off", nil, 9
	if _, err := Run(context.Background(), cpu.New(), short, run, Options{Overwrite: true}); err != nil {
		t.Fatalf("overwrite beside the user's files: %v", err)
	}
	check("overwrite")
	if name := checkLatest(t, run); name != "step-00000002" {
		t.Fatalf("latest %s after the overwrite", name)
	}
	if _, err := os.Stat(filepath.Join(run, ckptDir, "step-00000004")); err == nil {
		t.Fatal("the replaced run's step-00000004 is left")
	}
	for _, inner := range []string{filepath.Join(run, ckptDir, "inner"), filepath.Join(run, "sub", "deeper")} {
		_, err := Run(context.Background(), cpu.New(), short, inner, Options{})
		if err == nil || !strings.Contains(err.Error(), "inside the run directory "+run) {
			t.Fatalf("a run in %s: %v", inner, err)
		}
		if _, err := os.Stat(inner); err == nil {
			t.Fatalf("%s was created", inner)
		}
		if r, ok := EnclosingRun(inner); !ok || r != run {
			t.Fatalf("EnclosingRun(%s) = %s %v", inner, r, ok)
		}
	}
	if _, ok := EnclosingRun(filepath.Dir(run)); ok {
		t.Fatal("the run's parent is inside a run")
	}
}

// TestLoadRunPruned: a checkpoint pruned while LoadRun reads it (a run
// writing its next checkpoint) is not an error: LoadRun reads the new
// latest.
func TestLoadRunPruned(t *testing.T) {
	set := tokenSet(t)
	run := filepath.Join(t.TempDir(), "run")
	cfg := tinyRun(set)
	cfg.Steps, cfg.EST, cfg.Schedule, cfg.CheckpointEvery, cfg.KeepCheckpoints = 4, "off", nil, 1, 2
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(run, ckptDir)
	if err := os.WriteFile(filepath.Join(base, latestName), []byte("step-00000003"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := 0
	loadRunHook = func(dir string) {
		calls++
		if calls == 1 { // the run moves on: latest names step 4, step 3 is pruned
			if err := os.WriteFile(filepath.Join(base, latestName), []byte("step-00000004"), 0o644); err != nil {
				t.Error(err)
			}
			if err := os.RemoveAll(dir); err != nil {
				t.Error(err)
			}
		}
	}
	defer func() { loadRunHook = nil }()
	m, _, err := LoadRun(cpu.New(), run)
	if err != nil {
		t.Fatalf("LoadRun while its checkpoint was pruned: %v", err)
	}
	want, _, err := LoadRun(cpu.New(), run)
	if err != nil {
		t.Fatal(err)
	}
	n := m.Config().NumParams()
	a, b := make([]float32, n), make([]float32, n)
	m.Ops().Download(a, m.Params())
	want.Ops().Download(b, want.Params())
	if !slices.Equal(a, b) {
		t.Fatal("LoadRun's weights are not step 4's")
	}
}

// TestMessagesUseJSONKeys: configuration errors name the JSON keys a user
// writes, never Go's names for them.
func TestMessagesUseJSONKeys(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{`{"lr": "fast"}`, `"lr"`},
		{`{"sampler": {"group": "x"}}`, `"sampler.group"`},
		{`{"model": {"arch": "gpt2", "vocab": 0, "padded": 64, "layers": 1, "heads": 1, "channels": 8, "max_t": 8}}`, "model.vocab"},
		{`{"model": {"arch": "gpt2", "vocab": 100, "padded": 64, "layers": 1, "heads": 1, "channels": 8, "max_t": 8}}`, "model.padded"},
		{`{"model": {"arch": "llama", "vocab": 100, "padded": 128, "layers": 1, "heads": 2, "kv_heads": 1, "channels": 8, "ff": 8, "max_t": 8, "rope_theta": -1, "norm_eps": 1e-5}}`, "model.rope_theta"},
		{`{"lr": 1e-3,}`, "line 1, column"},
	} {
		_, err := resolve(t, "config", writeFile(t, "c.json", c.text), "data", "d")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want it to name %s)", c.text, err, c.want)
			continue
		}
		for _, goName := range []string{"Go struct", "plain", "{Arch:", "RopeTheta", "Vocab:"} {
			if strings.Contains(err.Error(), goName) {
				t.Errorf("%s: %v (names Go's %q)", c.text, err, goName)
			}
		}
	}
}

// TestLatestMessages: a missing checkpoints/latest beside complete
// checkpoints is said so, naming the newest; a latest with surrounding
// whitespace (an editor's newline) is read.
func TestLatestMessages(t *testing.T) {
	set := tokenSet(t)
	run := filepath.Join(t.TempDir(), "run")
	cfg := tinyRun(set)
	cfg.Steps, cfg.EST, cfg.Schedule, cfg.CheckpointEvery = 4, "off", nil, 2
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	latest := filepath.Join(run, ckptDir, latestName)
	if err := os.WriteFile(latest, []byte("step-00000004\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadRun(cpu.New(), run); err != nil {
		t.Fatalf("latest with a newline: %v", err)
	}
	if err := os.Remove(latest); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), latest) || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "step-00000004") {
		t.Fatalf("latest missing: %v", err)
	}
}
