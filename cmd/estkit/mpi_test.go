//go:build mpi && cgo

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/train"
)

// mpiBinary builds estkit with MPI once per test run.
func mpiBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Fatalf("mpirun is missing (make mpi-deps installs OpenMPI): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "estkit")
	if out, err := exec.Command("go", "build", "-tags", "mpi", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags mpi: %v\n%s", err, out)
	}
	return bin
}

// mpirun is the command that runs estkit args on n ranks: as root (CI)
// with the flag OpenMPI requires there, oversubscribed (2 cores), one
// OpenBLAS thread a rank.
func mpirun(ctx context.Context, bin string, n int, args ...string) *exec.Cmd {
	a := []string{"--oversubscribe", "-np", strconv.Itoa(n)}
	if os.Getuid() == 0 {
		a = append(a, "--allow-run-as-root")
	}
	cmd := exec.CommandContext(ctx, "mpirun", append(append(a, bin), args...)...)
	cmd.Env = append(os.Environ(), "OPENBLAS_NUM_THREADS=1")
	return cmd
}

func losses(t *testing.T, run string) []float64 {
	t.Helper()
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r train.StepRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Loss)
	}
	return out
}

// params are the parameters of a run's latest checkpoint (its
// model.safetensors, read as every reader reads it).
func params(t *testing.T, run string) []float32 {
	t.Helper()
	m, _, err := train.LoadRun(cpu.New(), run)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]float32, m.Params().Len())
	m.Ops().Download(p, m.Params())
	return p
}

func sameWithin(t *testing.T, what string, a, b []float32, rel float64) {
	t.Helper()
	var scale, worst float64
	for i := range a {
		scale = math.Max(scale, math.Abs(float64(a[i])))
		worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
	}
	if len(a) != len(b) || worst > rel*scale {
		t.Fatalf("%s: %d and %d parameters differ by up to %g (of %g)", what, len(a), len(b), worst, scale)
	}
}

// sameTrained compares the weights a and b of two runs of steps AdamW
// steps at learning rate at most lr whose gradients were reduced in
// different orders. AdamW's update m/(√v+ε) does not shrink with the
// gradient, so where a gradient is float noise (sums that nearly cancel,
// a sign decided by rounding) the reduction order's rounding moves a
// weight by up to a few lr per step; everywhere else the runs agree to
// float rounding. So: at most one weight in 10⁴ may differ by more than
// 1e-5 of the largest weight, and none by more than the most AdamW can
// move it (3·lr a step, bias correction included).
func sameTrained(t *testing.T, what string, a, b []float32, lr float64, steps int) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d and %d parameters", what, len(a), len(b))
	}
	var scale, worst float64
	for i := range a {
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	off := 0
	for i := range a {
		d := math.Abs(float64(a[i] - b[i]))
		worst = math.Max(worst, d)
		if d > 1e-5*scale {
			off++
		}
	}
	t.Logf("%s: %d of %d weights differ by more than 1e-5 of %g, the most by %g", what, off, len(a), scale, worst)
	if off > len(a)/10000 || worst > 3*lr*float64(steps) {
		t.Fatalf("%s: %d of %d weights differ by more than 1e-5 of the largest (%g), the most by %g (AdamW moves one by at most %g)",
			what, off, len(a), scale, worst, 3*lr*float64(steps))
	}
}

func mpiTokens(t *testing.T) string {
	dir, _, docs := sampleDocs(t, "600000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	return tok
}

// TestMPITrainMatchesOneProcess: mpirun -np 2 with --batch 2 trains as
// one process with --batch 4: each step's loss within 1e-5 relative and
// the final checkpoint's tensors likewise; gpt2-tiny and llama-tiny (with
// GPT-2's vocabulary, as the tokens are GPT-2's), full and under EST, with
// sampled updates, a draw per micro-batch and Bernoulli layers (blocks
// that one micro-batch skips and the other runs).
func TestMPITrainMatchesOneProcess(t *testing.T) {
	bin, tok := mpiBinary(t), mpiTokens(t)
	llama := train.Presets["llama-tiny"]
	llama.Vocab, llama.Padded = 50257, 50304 // GPT-2's tokens
	b, err := json.Marshal(map[string]any{"model": llama})
	if err != nil {
		t.Fatal(err)
	}
	llamaCfg := filepath.Join(t.TempDir(), "llama-tiny.json")
	if err := os.WriteFile(llamaCfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	gpt2, llamaTiny := []string{"--preset", "gpt2-tiny"}, []string{"--config", llamaCfg}
	est := []string{"--est-stages", "2,4", "--est-rates", "0.5:0.5:0.5,1:1:1"}
	for _, tc := range []struct {
		name        string
		model, args []string
	}{
		{"full", gpt2, nil},
		{"est-sampled-microbatch", gpt2, append([]string{"--est-update", "sampled", "--sample-every", "microbatch"}, est...)},
		{"est-bernoulli-microbatch", gpt2, append([]string{"--layer-mode", "bernoulli", "--sample-every", "microbatch"}, est...)},
		{"llama-full", llamaTiny, nil},
		{"llama-est", llamaTiny, est},
	} {
		t.Run(tc.name, func(t *testing.T) {
			common := append([]string{"--data", tok, "--steps", "4", "--seq", "16", "--accum", "2", "--eval-every", "0"}, tc.model...)
			one, two := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
			args := append(append([]string{"-q", "train", "--out", one, "--batch", "4"}, common...), tc.args...)
			if _, errs, code := run(t, args...); code != 0 {
				t.Fatal(errs)
			}
			args = append(append([]string{"-q", "train", "--out", two, "--batch", "2"}, common...), tc.args...)
			if out, err := mpirun(context.Background(), bin, 2, args...).CombinedOutput(); err != nil {
				t.Fatalf("mpirun: %v\n%s", err, out)
			}
			l1, l2 := losses(t, one), losses(t, two)
			if len(l1) != 4 || len(l2) != 4 {
				t.Fatalf("losses %v and %v", l1, l2)
			}
			for i := range l1 {
				if math.Abs(l1[i]-l2[i]) > 1e-5*math.Abs(l1[i]) {
					t.Fatalf("step %d: loss %v on one process, %v on two ranks", i, l1[i], l2[i])
				}
			}
			sameTrained(t, "final weights", params(t, one), params(t, two), 6e-4, 4)
		})
	}
}

// TestMPIOverlapReduceSameBits: mpirun -np 2 with --overlap-reduce (each
// block's gradients all-reduced while the backward pass goes on) trains
// bit for bit as without it (two processes: each value's sum a+b does not
// depend on the bucket it travels in), full and with blocks that one
// micro-batch skips and the other runs.
func TestMPIOverlapReduceSameBits(t *testing.T) {
	bin, tok := mpiBinary(t), mpiTokens(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"full", nil},
		{"est-bernoulli-microbatch", []string{"--est-stages", "2,4", "--est-rates", "0.5:0.5:0.5,1:1:1", "--layer-mode", "bernoulli", "--sample-every", "microbatch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after, behind := filepath.Join(t.TempDir(), "after"), filepath.Join(t.TempDir(), "behind")
			for _, r := range []struct {
				out   string
				extra []string
			}{{after, nil}, {behind, []string{"--overlap-reduce"}}} {
				args := append(append([]string{"-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", r.out, "--steps", "4", "--batch", "2",
					"--seq", "16", "--accum", "2", "--eval-every", "0"}, tc.args...), r.extra...)
				if out, err := mpirun(context.Background(), bin, 2, args...).CombinedOutput(); err != nil {
					t.Fatalf("mpirun %v: %v\n%s", r.extra, err, out)
				}
			}
			if l1, l2 := losses(t, after), losses(t, behind); len(l1) != 4 || fmt.Sprint(l1) != fmt.Sprint(l2) {
				t.Fatalf("losses: reduced after the backward pass %v, behind it %v", l1, l2)
			}
			sameWithin(t, "overlapped against not", params(t, after), params(t, behind), 0)
		})
	}
}

// stream is the sequences a run's lineage lists, in order, each once.
func stream(t *testing.T, run string) []shards.SeqRef {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "lineage.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []shards.SeqRef
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var l struct {
			Sequences [][]shards.SeqRef `json:"sequences"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatal(err)
		}
		for _, mb := range l.Sequences {
			out = append(out, mb...)
		}
	}
	return out
}

// TestMPIResumeOtherRanks: a 2-rank checkpoint resumes on 1 rank and that
// run's checkpoint on 2 again. The resumed runs read the global stream on
// from the first sample no rank had read: over the three parts, the
// sequences trained are exactly the stream's first ones, each once
// (docs/SCALING.md, "Resuming"); the loss goes on from where it was.
func TestMPIResumeOtherRanks(t *testing.T) {
	bin, tok := mpiBinary(t), mpiTokens(t)
	runDir := filepath.Join(t.TempDir(), "run")
	if out, err := mpirun(context.Background(), bin, 2, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", runDir,
		"--steps", "2", "--batch", "2", "--seq", "16", "--eval-every", "0", "--lr", "3e-3", "--warmup", "0").CombinedOutput(); err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume", "--steps", "4"); code != 0 {
		t.Fatal(errs)
	}
	if out, err := mpirun(context.Background(), bin, 2, "-q", "train", "--out", runDir, "--resume", "--steps", "6").CombinedOutput(); err != nil {
		t.Fatalf("mpirun --resume: %v\n%s", err, out)
	}
	got := stream(t, runDir)
	if len(got) != 2*4+2*2+2*4 {
		t.Fatalf("%d sequences trained, want 20", len(got))
	}
	cfg, err := train.ReadRunConfig(runDir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := shards.Open(tok, false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	l, err := shards.NewLoader(shards.Config{Data: []shards.Weighted{{Set: set, Weight: 1}}, B: cfg.Batch, T: cfg.Seq, Order: string(cfg.Order), Seed: cfg.Seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[shards.SeqRef]int{}
	for k := range int64(len(got)) {
		q, err := l.Sequence(k)
		if err != nil {
			t.Fatal(err)
		}
		want[q]++
	}
	for _, q := range got {
		if want[q]--; want[q] < 0 {
			t.Fatalf("sequence %+v trained but not among the stream's first %d (or twice): %v", q, len(got), got)
		}
	}
	ls := losses(t, runDir)
	if len(ls) != 6 {
		t.Fatalf("losses %v", ls)
	}
	for i, x := range ls {
		if math.IsNaN(x) || x <= 0 || (i > 0 && x > ls[0]+0.5) {
			t.Fatalf("loss curve %v", ls)
		}
	}
}

// rankPID is the pid of mpirun's child of rank r (its environment says
// OMPI_COMM_WORLD_RANK=r), 0 while there is none.
func rankPID(mpirunPID, r int) int {
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", mpirunPID, mpirunPID))
	for _, f := range strings.Fields(string(kids)) {
		pid, _ := strconv.Atoi(f)
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == "OMPI_COMM_WORLD_RANK="+strconv.Itoa(r) {
				return pid
			}
		}
	}
	return 0
}

// TestMPIRankKilled: rank 1 killed mid-run makes the job end within a
// minute with a message naming rank 1, no checkpoint half-written: the
// run resumes from its latest and ends with the weights of an
// uninterrupted run.
func TestMPIRankKilled(t *testing.T) {
	bin, tok := mpiBinary(t), mpiTokens(t)
	args := func(out string, extra ...string) []string {
		return append([]string{"-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", out, "--steps", "8", "--batch", "2",
			"--seq", "16", "--eval-every", "0", "--checkpoint-every", "1"}, extra...)
	}
	whole := filepath.Join(t.TempDir(), "whole")
	if out, err := mpirun(context.Background(), bin, 2, args(whole)...).CombinedOutput(); err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	runDir := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := mpirun(ctx, bin, 2, args(runDir)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killed := false
	for !killed {
		select {
		case err := <-done:
			t.Fatalf("the run ended before rank 1 was killed: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if b, _ := os.ReadFile(filepath.Join(runDir, "metrics.jsonl")); bytes.Count(b, []byte("\n")) < 3 {
			continue
		}
		if pid := rankPID(cmd.Process.Pid, 1); pid != 0 {
			if p, err := os.FindProcess(pid); err == nil && p.Kill() == nil {
				killed = true
			}
		}
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("mpirun succeeded with rank 1 killed:\n%s", out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("the job still runs a minute after rank 1 was killed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "rank 1") {
		t.Fatalf("the job's message does not name rank 1:\n%s", out.String())
	}
	if b, err := mpirun(context.Background(), bin, 2, "-q", "train", "--out", runDir, "--resume").CombinedOutput(); err != nil {
		t.Fatalf("mpirun --resume: %v\n%s", err, b)
	}
	sameWithin(t, "resumed against uninterrupted", params(t, whole), params(t, runDir), 0)
	lw, lr := losses(t, whole), losses(t, runDir)
	if fmt.Sprint(lw) != fmt.Sprint(lr) {
		t.Fatalf("losses: uninterrupted %v, killed and resumed %v", lw, lr)
	}
}
