package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/tokenize"
	"github.com/estkit/estkit/train"
)

// TestRunCommandsNameThemselves: export, eval and sample name themselves
// in their errors, not "train:", and a run without a checkpoint is not
// said to have nothing "to resume from" (they do not resume).
func TestRunCommandsNameThemselves(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "norun")
	os.MkdirAll(empty, 0o755)
	for _, c := range [][]string{
		{"export", "--run", empty, "--hf", filepath.Join(dir, "hf")},
		{"eval", "--run", empty},
		{"sample", "--run", empty, "--prompt", "x"},
		{"eval", "--run", filepath.Join(dir, "missing")},
		{"eval", "--run", ""},
	} {
		_, errs, code := run(t, append([]string{"-q"}, c...)...)
		if code == 0 || !strings.Contains(errs, "estkit: "+c[0]+": ") || strings.Contains(errs, "train:") || strings.Contains(errs, "resume") {
			t.Errorf("%v: exit %d, %q (want an error from %s naming no other command)", c, code, errs, c[0])
		}
	}
}

// TestESTTraceStepsPastRun: est-trace --steps past the steps a run has
// says how many it has, and a range running over its end stops there and
// says so, rather than printing subnetworks of steps never trained.
func TestESTTraceStepsPastRun(t *testing.T) {
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	conf := filepath.Join(dir, "tiny.json")
	os.WriteFile(conf, []byte("{"+tinyGPT2+"}"), 0o644)
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--out", runDir, "--steps", "4", "--batch", "2", "--seq", "16", "--est", "est-gpt2"); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "6:9")
	if code == 0 || out != "" || !strings.Contains(errs, "4 steps") {
		t.Errorf("--steps 6:9 of a 4-step run: exit %d, %d bytes out, %q", code, len(out), errs)
	}
	out, errs, code = run(t, "est-trace", "--run", runDir, "--steps", "2:9")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "4 steps") {
		t.Errorf("--steps 2:9 of a 4-step run: exit %d, %d lines, %q", code, strings.Count(out, "\n"), errs)
	}
	// A:A is an empty range, at the end too
	if out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "4:4"); code != 0 || out != "" {
		t.Errorf("--steps 4:4 of a 4-step run: exit %d, %q %q", code, out, errs)
	}
	// a run extended by --resume --steps has the steps it trained
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume", "--steps", "6"); code != 0 {
		t.Fatalf("resume: %s", errs)
	}
	if out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "4:6"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("--steps 4:6 of a run extended to 6: exit %d, %q %q", code, out, errs)
	}
}

// TestSampleStreams: sample prints its text as it is made, and what it
// printed in pieces is the text of the whole sequence, as before.
func TestSampleStreams(t *testing.T) {
	_, _, runDir, _ := trainedRun(t)
	var w countingWriter
	var errb strings.Builder
	if code := execute([]string{"sample", "--run", runDir, "--prompt", "func", "--tokens", "12", "--seed", "3"}, &w, &errb); code != 0 {
		t.Fatal(errb.String())
	}
	m, _, err := train.LoadRun(cpu.New(), runDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := tokenize.Load("gpt2")
	ids, _ := tok.Encode("func", tokenize.EncodeOptions{})
	in := make([]int32, len(ids))
	for i, v := range ids {
		in[i] = int32(v)
	}
	out, err := train.Generate(context.Background(), m, in, 12, 0.8, 40, 3)
	if err != nil {
		t.Fatal(err)
	}
	u := make([]uint32, len(out))
	for i, v := range out {
		u[i] = uint32(v)
	}
	text, _ := tok.Decode(u)
	if w.b.String() != string(text)+"\n" {
		t.Errorf("sample printed %q, the sequence decodes to %q", w.b.String(), text)
	}
	if w.writes < 3 {
		t.Errorf("sample wrote its text in %d pieces: not as it was made", w.writes)
	}
}

type countingWriter struct {
	b      strings.Builder
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.b.Write(p)
}

func TestStableEnd(t *testing.T) {
	for in, want := range map[string]int{"abc": 3, "ab\xe2\x82": 2, "ab\ufffd": 2, "": 0, "\xe2": 0, "a\ufffdb": 5, "é": 2} {
		if got := stableEnd([]byte(in)); got != want {
			t.Errorf("stableEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestRunReadersMissingRun: a run directory that does not exist, or none
// given, is said to be so, not to "have no checkpoint".
func TestRunReadersMissingRun(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct{ run, want string }{{missing, missing + " does not exist"}, {"", `--run "": want a path`}} {
		_, errs, code := run(t, "-q", "eval", "--run", c.run)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("eval --run %q: exit %d, %q (want %q)", c.run, code, errs, c.want)
		}
	}
}
