//go:build !cuda && !cudaemu

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cuda"
)

// cudaStubs is where Debian's nvidia-cuda-dev puts the driver's stub
// library to link against (the Makefile's CUDA_STUBS).
const cudaStubs = "/usr/lib/x86_64-linux-gnu/stubs"

// TestCUDABuild builds what make cuda gives users, estkit and estkit-cuda
// (the cuda build, which gorgonia.org/cu ends at start-up where there is
// no GPU) side by side, and runs them as a user would on this machine:
// help, version and the data pipeline and a CPU training run work
// whatever the machine; --device cuda and gpu either run on the GPU or
// fail on stderr, exit status 1, naming what is missing. It needs CUDA's
// headers and driver stub (make cuda-deps) and skips without them, unless
// ESTKIT_REQUIRE_CUDA_BUILD is set (make cuda sets it).
func TestCUDABuild(t *testing.T) {
	var missing []string
	for _, f := range []string{"/usr/include/cuda.h", "/usr/include/cublas_v2.h", filepath.Join(cudaStubs, "libcuda.so")} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	switch {
	case len(missing) > 0 && os.Getenv("ESTKIT_REQUIRE_CUDA_BUILD") != "":
		t.Fatalf("ESTKIT_REQUIRE_CUDA_BUILD is set but CUDA's headers or driver stub are missing: %s", strings.Join(missing, ", "))
	case len(missing) > 0:
		t.Skipf("no CUDA headers or driver stub to build estkit-cuda with (%s missing; make cuda-deps installs them)", strings.Join(missing, ", "))
	case testing.Short():
		t.Skip("-short: builds two binaries")
	}
	dir := t.TempDir()
	estkit := buildEstkit(t, dir, "estkit", "")
	ldflags := os.Getenv("CGO_LDFLAGS")
	if ldflags == "" {
		ldflags = "-L" + cudaStubs
	}
	buildEstkit(t, dir, cudaHelper, "cuda", "CGO_LDFLAGS="+ldflags)

	runIt := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(estkit, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := exitCode(t, cmd.Run())
		if strings.Contains(out.String(), "Error in initialization") {
			t.Fatalf("%q: the CUDA driver binding ended estkit at start-up:\n%s", args, out.String())
		}
		return out.String(), errb.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errs, code := runIt(args...)
		if code != 0 {
			t.Fatalf("%q: exit status %d\n%s", args, code, errs)
		}
		return out
	}
	if out := mustRun("--help"); !strings.Contains(out, "Usage:") {
		t.Fatalf("--help: %s", out)
	}
	if out := mustRun("version"); !strings.HasPrefix(out, "estkit ") {
		t.Fatalf("version: %s", out)
	}
	samples, docs, tok := filepath.Join(dir, "samples"), filepath.Join(dir, "docs"), filepath.Join(dir, "tok")
	mustRun("-q", "samples", "--out", samples, "--bytes", "300000")
	mustRun("-q", "ingest", "--out", docs, samples)
	mustRun("-q", "shard", "--val-fraction", "0.1", "--out", tok, docs)
	train := []string{"train", "--preset", "gpt2-tiny", "--data", tok, "--steps", "2", "--batch", "2", "--seq", "16"}
	mustRun(append([]string{"-q"}, append(train, "--out", filepath.Join(dir, "cpu"))...)...)

	gpu := cuda.Probe()
	for _, args := range [][]string{
		append([]string{"-q", "--device", "cuda"}, append(train, "--out", filepath.Join(dir, "cuda"))...),
		{"gpu"},
	} {
		out, errs, code := runIt(args...)
		switch {
		case gpu == nil && code != 0:
			t.Errorf("%q on a machine with a GPU: exit status %d\n%s", args, code, errs)
		case gpu != nil && (code != 1 || out != "" || !strings.Contains(errs, "estkit: ") || !strings.Contains(errs, gpu.Error())):
			t.Errorf("%q without a GPU (%v): exit status %d, stdout %q, stderr %q; want 1 and stderr naming what is missing", args, gpu, code, out, errs)
		}
	}
}
