package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/estkit/estkit/kernels/cpu"
)

// says fails t, naming who, for each of want that err's message does
// not hold.
func says(t *testing.T, who string, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", who, err, w)
		}
	}
}

// tree is every regular file under dir, by path relative to it, with its
// bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 { // a link is what it points at, not what is there
			to, err := os.Readlink(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = []byte("-> " + to)
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// sameTree fails unless dir holds exactly the files of want, byte for byte
// (the lock file aside: taking a lock may create it).
func sameTree(t *testing.T, want map[string][]byte, dir, what string) {
	t.Helper()
	got := tree(t, dir)
	for name, b := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, b) {
			t.Fatalf("%s: %s changed or vanished", what, filepath.Join(dir, name))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok && name != ".lock" {
			t.Fatalf("%s: %s appeared", what, filepath.Join(dir, name))
		}
	}
}

// checkLatest fails unless checkpoints/latest names a checkpoint that
// exists.
func checkLatest(t *testing.T, run string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, ckptDir, latestName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(run, ckptDir, string(b), "model.safetensors")); err != nil {
		t.Fatalf("checkpoints/latest names %s: %v", b, err)
	}
	return string(b)
}

// TestFreshRunIntoRun: a fresh run into a directory that holds a run is
// refused with a message naming it and leaves every file as it was; so is
// one into a directory that is not a run. Overwrite replaces a run as a
// whole (its longer run's checkpoints with it), never a directory that
// holds anything else.
func TestFreshRunIntoRun(t *testing.T) {
	set := tokenSet(t)
	run := filepath.Join(t.TempDir(), "run")
	cfg := tinyRun(set)
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	before := tree(t, run)
	short := tinyRun(set)
	short.Steps, short.Seed = 2, 9
	short.Schedule = nil
	short.EST = "off"
	_, err := Run(context.Background(), cpu.New(), short, run, Options{})
	if err == nil || !strings.Contains(err.Error(), run) || !strings.Contains(err.Error(), "--overwrite") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("fresh run into a run: %v", err)
	}
	sameTree(t, before, run, "refused fresh run")

	if _, err := Run(context.Background(), cpu.New(), short, run, Options{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if name := checkLatest(t, run); name != "step-00000002" {
		t.Fatalf("latest is %s after the overwrite", name)
	}
	if recs := records(t, filepath.Join(run, "metrics.jsonl")); len(recs) != 2 {
		t.Fatalf("%d metric records after the overwrite", len(recs))
	}
	for name := range tree(t, run) {
		if strings.HasPrefix(name, filepath.Join(ckptDir, "step-00000006")) || strings.HasPrefix(name, filepath.Join(ckptDir, "step-00000003")) {
			t.Fatalf("the replaced run's %s is left", name)
		}
	}

	other := filepath.Join(t.TempDir(), "notes")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {Overwrite: true}} {
		_, err := Run(context.Background(), cpu.New(), short, other, o)
		if err == nil || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "notes.txt") {
			t.Fatalf("run into a directory that is not a run (overwrite %v): %v", o.Overwrite, err)
		}
		sameTree(t, map[string][]byte{"notes.txt": []byte("mine")}, other, "refused run into a foreign directory")
	}
	// a run with a file of the user's beside it is replaced, the file left
	if err := os.WriteFile(filepath.Join(run, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cpu.New(), short, run, Options{Overwrite: true}); err != nil {
		t.Fatalf("overwrite of a run holding a file of the user's: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(run, "notes.txt")); err != nil || string(b) != "mine" {
		t.Fatalf("overwrite changed the user's notes.txt: %q %v", b, err)
	}
}

// TestPruneKeepsOwnCheckpoints: checkpoint directories that sort after the
// run's own (here two of another run) never make pruning delete the
// checkpoint just written, and are not deleted themselves; another run's
// checkpoint where the run's next one goes is refused, not replaced.
func TestPruneKeepsOwnCheckpoints(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	a := filepath.Join(t.TempDir(), "a")
	if _, err := Run(context.Background(), cpu.New(), cfg, a, Options{}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, cpu.New(), cfg, b, Options{Progress: func(r StepRecord, _ time.Duration) {
		if r.Step == 4 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// another run's checkpoint where this run's next one goes is not replaced
	theirs := filepath.Join(b, ckptDir, "step-00000006")
	if err := os.CopyFS(theirs, os.DirFS(filepath.Join(a, ckptDir, "step-00000006"))); err != nil {
		t.Fatal(err)
	}
	want := tree(t, theirs)
	if _, err := Run(context.Background(), cpu.New(), cfg, b, Options{Resume: true}); err == nil || !strings.Contains(err.Error(), theirs) {
		t.Fatalf("resume over another run's checkpoint of the same step: %v", err)
	}
	sameTree(t, want, theirs, "refused checkpoint")
	if err := os.RemoveAll(theirs); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"step-00000098", "step-00000099"} {
		if err := os.CopyFS(filepath.Join(b, ckptDir, n), os.DirFS(filepath.Join(a, ckptDir, "step-00000006"))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Run(context.Background(), cpu.New(), cfg, b, Options{Resume: true}); err != nil {
		t.Fatal(err)
	}
	if name := checkLatest(t, b); name != "step-00000006" {
		t.Fatalf("latest is %s", name)
	}
	// this run's newest two (the interrupt's, 5, and the last, 6) and the
	// other run's, which pruning never touches
	for _, n := range []string{"step-00000005", "step-00000098", "step-00000099"} {
		if _, err := os.Stat(filepath.Join(b, ckptDir, n)); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(b, ckptDir, "step-00000003")); err == nil {
		t.Fatal("step-00000003, this run's third newest, was kept")
	}
}

// TestCheckpointOptionsChecked: keep_checkpoints and checkpoint_every out
// of range are errors before the run directory is touched, not a panic
// after the checkpoint is deleted.
func TestCheckpointOptionsChecked(t *testing.T) {
	set := tokenSet(t)
	for _, c := range []struct {
		name string
		set  func(*Config)
	}{
		{"keep -1", func(c *Config) { c.KeepCheckpoints = -1 }},
		{"checkpoint every -3", func(c *Config) { c.CheckpointEvery = -3 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := tinyRun(set)
			c.set(&cfg)
			out := filepath.Join(t.TempDir(), "run")
			_, err := Run(context.Background(), cpu.New(), cfg, out, Options{})
			if err == nil {
				t.Fatal("accepted")
			}
			if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Fatalf("%s created (%v) before the refusal: %v", out, serr, err)
			}
		})
	}
}

// flipBit inverts one bit of a file.
func flipBit(t *testing.T, path string, off int64, bit uint) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 1 << bit
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointCorruption flips one bit at 16 offsets spread over each
// kind of file a checkpoint is read from (tensors, moments, state, the
// checkpoint's manifest, the run's config.json) and requires resume and
// LoadRun (eval, sample, export) to refuse each with an error naming the
// file.
func TestCheckpointCorruption(t *testing.T) {
	cfg, run := checkpointedRun(t, 3, 0, 0)
	ckpt := filepath.Join(run, ckptDir, "step-00000003")
	files := []string{filepath.Join(run, "config.json"), filepath.Join(ckpt, checkpointManifest), filepath.Join(ckpt, "state.json")}
	for _, f := range tensorFiles {
		files = append(files, filepath.Join(ckpt, f))
	}
	for _, path := range files {
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 16 {
			off := int64(i) * int64(len(orig)-1) / 15
			flipBit(t, path, off, uint(i%8))
			what := fmt.Sprintf("%s, bit %d of byte %d", filepath.Base(path), i%8, off)
			_, err := Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("resume with %s flipped: %v", what, err)
			}
			if filepath.Base(path) != "config.json" && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("resume with %s flipped: not ErrCorrupt: %v", what, err)
			}
			_, _, err = LoadRun(cpu.New(), run)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadRun with %s flipped: %v", what, err)
			}
			if err := os.WriteFile(path, orig, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := LoadRun(cpu.New(), run); err != nil {
		t.Fatalf("the restored run: %v", err)
	}
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true}); err != nil {
		t.Fatalf("the restored run: %v", err)
	}
}

// TestCheckpointRecovery: a latest checkpoint that is missing (deleted, or
// latest naming a step that was never written) is reported as missing,
// not as a checkpoint without a manifest; a missing or corrupt one names
// the newest older checkpoint that is intact and how to use it,
// and following that resumes. estkit moves and deletes nothing itself.
func TestCheckpointRecovery(t *testing.T) {
	cfg, run := checkpointedRun(t, 4, 2, 2)
	base := filepath.Join(run, ckptDir)
	latest := filepath.Join(base, latestName)
	refused := func(what string, want ...string) {
		t.Helper()
		before := tree(t, run)
		_, rerr := ResolveResume(run, nil)
		_, err := Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true})
		if err == nil {
			t.Fatalf("%s: resumed", what)
		}
		// ResolveResume checks the manifest and state, not the tensors
		for _, e := range []error{rerr, err} {
			if e == nil {
				continue
			}
			says(t, what, e, want...)
		}
		if after := tree(t, run); !maps.EqualFunc(before, after, bytes.Equal) {
			t.Fatalf("%s: the refused resume changed the run directory", what)
		}
	}
	intact := "checkpoint step-00000002 is intact"
	howto := "printf step-00000002 > " + latest

	os.WriteFile(latest, []byte("step-00000009"), 0o644)
	refused("latest naming step 9", "checkpoint step-00000009 named by "+latest+" is missing", "checkpoint step-00000004 is intact", "printf step-00000004 > "+latest)
	os.WriteFile(latest, []byte("step-00000004"), 0o644)

	tensors := filepath.Join(base, "step-00000004", tensorFiles[0])
	orig, err := os.ReadFile(tensors)
	if err != nil {
		t.Fatal(err)
	}
	flipBit(t, tensors, int64(len(orig)/2), 3)
	refused("a corrupt tensor in step 4", tensors, intact, howto, "move step-00000004 out of "+base)

	// the advice followed: step 4 moved aside by the user, latest at step 2
	aside := filepath.Join(t.TempDir(), "step-00000004")
	if err := os.Rename(filepath.Join(base, "step-00000004"), aside); err != nil {
		t.Fatal(err)
	}
	refused("step 4 moved away", "checkpoint step-00000004 named by "+latest+" is missing", intact, howto)
	os.WriteFile(latest, []byte("step-00000002"), 0o644)
	rc, err := ResolveResume(run, nil)
	if err != nil {
		t.Fatalf("resume from step 2 as advised: %v", err)
	}
	if _, err := Run(context.Background(), cpu.New(), rc, run, Options{Resume: true}); err != nil {
		t.Fatalf("resume from step 2 as advised: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "step-00000004", checkpointManifest)); err != nil {
		t.Fatalf("the resume from step 2 did not write step 4 again: %v", err)
	}

	// no intact older checkpoint: none is named
	for _, step := range []string{"step-00000002", "step-00000004"} {
		p := filepath.Join(base, step, "state.json")
		b, _ := os.ReadFile(p)
		flipBit(t, p, int64(len(b)/2), 1)
	}
	_, err = Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true})
	if err == nil || strings.Contains(err.Error(), "intact") {
		t.Fatalf("both checkpoints corrupt: %v", err)
	}
}

// TestResumeBeforeFirstCheckpoint: --resume of a run stopped before it
// wrote its first checkpoint says that none was written and that
// --overwrite starts the run again, and changes nothing. (ResolveResume
// takes the run's config.json; Run refuses.)
func TestResumeBeforeFirstCheckpoint(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	cfg.CheckpointEvery = 0
	run := filepath.Join(t.TempDir(), "run")
	// interrupted before its first step was recorded, as Run's loop is
	// (a SIGKILL mid-step leaves the same): nothing to checkpoint
	s, err := OpenSession(context.Background(), cpu.New(), cfg, run, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Interrupted(context.Canceled); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(run, "config.json")); err != nil {
		t.Fatalf("the stopped run has no config.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(run, ckptDir, latestName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stopped run has a checkpoint: %v", err)
	}
	before := tree(t, run)
	rc, err := ResolveResume(run, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cpu.New(), rc, run, Options{Resume: true})
	if err == nil || !strings.Contains(err.Error(), "no checkpoint was written yet") || !strings.Contains(err.Error(), "--overwrite") || strings.Contains(err.Error(), "is it a run directory") {
		t.Errorf("resume before the first checkpoint: %v", err)
	}
	if after := tree(t, run); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("the refused resume changed the run directory")
	}
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{Overwrite: true}); err != nil {
		t.Fatalf("--overwrite, as the refusal says: %v", err)
	}
}

// TestLoadRunChecksConfig: a config.json edited into another valid one (a
// changed vocabulary) and a Hugging Face config.json in its place are
// refused by name.
func TestLoadRunChecksConfig(t *testing.T) {
	cfg, run := checkpointedRun(t, 2, 0, 0)
	path := filepath.Join(run, "config.json")
	orig, _ := os.ReadFile(path)
	edited := bytes.Replace(orig, []byte(`"vocab": 50257`), []byte(`"vocab": 50000`), 1)
	if bytes.Equal(edited, orig) {
		t.Fatalf("no vocabulary in %s", orig)
	}
	os.WriteFile(path, edited, 0o644)
	_, _, err := LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), checkpointManifest) {
		t.Fatalf("LoadRun with an edited config.json: %v", err)
	}
	hf := t.TempDir()
	m, _ := InitModel(cpu.New(), cfg.Model, 1)
	if err := ExportHF(m, hf, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(hf, "config.json"))
	os.WriteFile(path, b, 0o644)
	if _, _, err := LoadRun(cpu.New(), run); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Hugging Face") {
		t.Fatalf("LoadRun with a Hugging Face config.json: %v", err)
	}
}

// TestResumeRefusesShortRecords: records that no longer reach the
// checkpoint's step (a power cut lost their tail) are refused by name on
// resume, and left as they are.
func TestResumeRefusesShortRecords(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	for _, name := range []string{"metrics.jsonl", "lineage.jsonl"} {
		t.Run(name, func(t *testing.T) {
			run := filepath.Join(t.TempDir(), "run")
			ctx, cancel := context.WithCancel(context.Background())
			_, err := Run(ctx, cpu.New(), cfg, run, Options{Progress: func(r StepRecord, _ time.Duration) {
				if r.Step == 4 {
					cancel()
				}
			}})
			if !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			path := filepath.Join(run, name)
			b, _ := os.ReadFile(path)
			lines := bytes.SplitAfter(b, []byte("\n"))
			os.WriteFile(path, bytes.Join(lines[:2], nil), 0o644) // steps 0 and 1 of the 3 the checkpoint covers
			before := tree(t, run)
			_, err = Run(context.Background(), cpu.New(), cfg, run, Options{Resume: true})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("resume over short records: %v", err)
			}
			sameTree(t, before, run, "refused resume")
		})
	}
}

// TestExportRefusesRun: export never writes into a run directory or a
// directory holding files it did not write; it may replace its own export.
func TestExportRefusesRun(t *testing.T) {
	_, run := checkpointedRun(t, 2, 0, 0)
	m, _, err := LoadRun(cpu.New(), run)
	if err != nil {
		t.Fatal(err)
	}
	before := tree(t, run)
	if err := ExportHF(m, run, ExportOptions{}); err == nil || !strings.Contains(err.Error(), run) {
		t.Fatalf("export into the run: %v", err)
	}
	sameTree(t, before, run, "refused export")
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "README.md"), []byte("mine"), 0o644)
	if err := ExportHF(m, other, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "README.md") {
		t.Fatalf("export into a directory of the user's: %v", err)
	}
	sameTree(t, map[string][]byte{"README.md": []byte("mine")}, other, "refused export")
	hf := t.TempDir()
	for range 2 {
		if err := ExportHF(m, hf, ExportOptions{}); err != nil {
			t.Fatalf("export, and again over its own export: %v", err)
		}
	}
	// a Hugging Face model folder of the user's (say the one --init-from
	// read) looks like an export but is not estkit's: refused, untouched
	users := map[string][]byte{
		"config.json":       []byte(`{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 768}` + "\n"),
		"model.safetensors": []byte("the user's weights"),
	}
	theirs := t.TempDir()
	for name, b := range users {
		os.WriteFile(filepath.Join(theirs, name), b, 0o644)
	}
	if err := ExportHF(m, theirs, ExportOptions{}); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("export into a Hugging Face folder of the user's: %v", err)
	}
	sameTree(t, users, theirs, "refused export")
}

// TestEvalWithoutData: a configuration without data is an error, not a
// panic.
func TestEvalWithoutData(t *testing.T) {
	cfg := tinyRun("")
	cfg.Data = nil
	m, err := InitModel(cpu.New(), cfg.Model, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Eval(m, &cfg, "val", 1); err == nil {
		t.Fatal("no error")
	}
}

// FuzzCheckpointManifest: any bytes either fail to parse as a checkpoint
// manifest, with an error naming the file, or are exactly the manifest
// they decode to; never a panic.
func FuzzCheckpointManifest(f *testing.F) {
	m := ckptManifest{Format: ckptFormat, Version: ckptVersion, Run: "0123456789abcdef", Step: 6, ConfigHash: "00112233aabbccdd",
		Config: FileRecord{Name: "config.json", Size: 700, SHA256: strings.Repeat("ab", 32)},
		Files:  []FileRecord{{Name: "model.safetensors", Size: 1 << 20, SHA256: strings.Repeat("cd", 32)}}}
	seed := m.encode()
	f.Add(seed)
	f.Add(bytes.ToUpper(seed))
	f.Add(seed[:len(seed)/2])
	f.Add([]byte(`{"format": "estkit.checkpoint", "version": 1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseManifest("fuzz/manifest.json", b)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz/manifest.json") || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without the file or ErrCorrupt: %v", err)
			}
			return
		}
		if !bytes.Equal(got.encode(), b) {
			t.Fatalf("accepted bytes that are not the manifest's encoding: %q", b)
		}
	})
}
