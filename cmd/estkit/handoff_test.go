//go:build !cuda && !cudaemu

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestMain: run as estkit-cuda (a link to this test binary beside a built
// estkit), the test binary is the fake helper of TestHandOff.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == cudaHelper {
		os.Exit(fakeHelper(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeHelper stands in for estkit-cuda. FAKE_HELPER=echo: print its
// process id and arguments as JSON on stdout and a line on stderr, and
// exit with FAKE_HELPER_EXIT. FAKE_HELPER=wait: print "ready" on stdout,
// wait for SIGINT or SIGTERM and exit with 128 + its number after naming
// it on stderr.
func fakeHelper(args []string) int {
	switch os.Getenv("FAKE_HELPER") {
	case "echo":
		b, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "args": args})
		os.Stdout.Write(append(b, '\n'))
		os.Stderr.WriteString("fake helper: on stderr\n")
		code := 0
		for _, c := range os.Getenv("FAKE_HELPER_EXIT") {
			code = 10*code + int(c-'0')
		}
		return code
	case "wait":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		os.Stdout.WriteString("ready\n")
		s := (<-sigs).(syscall.Signal)
		os.Stderr.WriteString("fake helper: got " + s.String() + "\n")
		return 128 + int(s)
	}
	os.Stderr.WriteString("fake helper: FAKE_HELPER is not set\n")
	return 99
}

// goTool returns the go command that runs this test, or skips.
func goTool(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to build estkit with: %v", err)
	}
	return gobin
}

// buildEstkit builds this package into dir/name with the build tags and
// extra environment given.
func buildEstkit(t *testing.T, dir, name, tags string, env ...string) string {
	t.Helper()
	bin := filepath.Join(dir, name)
	cmd := exec.Command(goTool(t), "build", "-tags", tags, "-o", bin, ".")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags '%s': %v\n%s", tags, err, out)
	}
	return bin
}

// fakeDriverDir compiles kernels/cuda's fake libcuda.so.1 into a directory
// of its own (for LD_LIBRARY_PATH), or skips without a C compiler.
func fakeDriverDir(t *testing.T) string {
	t.Helper()
	cc, err := exec.Command(goTool(t), "env", "CC").Output()
	if err != nil || strings.TrimSpace(string(cc)) == "" {
		t.Skipf("no C compiler to build the fake driver with (go env CC: %v)", err)
	}
	dir := t.TempDir()
	src := filepath.Join("..", "..", "kernels", "cuda", "testdata", "fakecuda.c")
	if out, err := exec.Command(strings.TrimSpace(string(cc)), "-shared", "-fPIC", "-o", filepath.Join(dir, "libcuda.so.1"), src).CombinedOutput(); err != nil {
		t.Fatalf("building the fake driver: %v\n%s", err, out)
	}
	return dir
}

// exitCode is the exit status of a finished command, -1 if a signal ended it.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return 0
}

// TestHandOff: a built estkit runs --device cuda commands and gpu in the
// estkit-cuda beside it (here a fake that reports what it got, over a fake
// driver with one device), as the same process: same id, the arguments as
// given, its stdout and stderr apart, its exit status, and SIGINT and
// SIGTERM sent to estkit's process id reach it. Without a device or a
// helper, estkit says which is missing and exits 1 without starting it;
// other commands, and help, run in estkit itself.
func TestHandOff(t *testing.T) {
	dir := t.TempDir()
	estkit := buildEstkit(t, dir, "estkit", "")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, cudaHelper)); err != nil {
		t.Fatal(err)
	}
	driver := fakeDriverDir(t)
	command := func(env []string, args ...string) *exec.Cmd {
		cmd := exec.Command(estkit, args...)
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+driver, "FAKE_CUDA_INIT=0", "FAKE_CUDA_DEVICES=1")
		cmd.Env = append(cmd.Env, env...)
		return cmd
	}
	runIt := func(cmd *exec.Cmd) (string, string, int) {
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), exitCode(t, err)
	}

	for _, c := range []struct {
		name string
		args []string
		code string
	}{
		{"train", []string{"--json", "-q", "--device", "cuda", "train", "--preset", "gpt2-tiny", "--data", "a:0.5", "--data", "b:0.5", "--out", "r"}, "3"},
		{"device after the command", []string{"eval", "--run", "r", "--device=cuda"}, "0"},
		{"gpu", []string{"gpu"}, "1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := command([]string{"FAKE_HELPER=echo", "FAKE_HELPER_EXIT=" + c.code}, c.args...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			code := exitCode(t, cmd.Run())
			var got struct {
				Pid  int
				Args []string
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("stdout is not the helper's: %v\n%s\nstderr: %s", err, out.String(), errb.String())
			}
			if got.Pid != cmd.Process.Pid {
				t.Errorf("the helper ran as process %d, estkit was %d: not the same process", got.Pid, cmd.Process.Pid)
			}
			if !reflect.DeepEqual(got.Args, c.args) {
				t.Errorf("the helper got %q, want %q", got.Args, c.args)
			}
			if errb.String() != "fake helper: on stderr\n" {
				t.Errorf("stderr %q, want the helper's line alone", errb.String())
			}
			if want := int(c.code[0] - '0'); code != want {
				t.Errorf("exit status %d, want the helper's %d", code, want)
			}
		})
	}

	for _, s := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run("signal "+s.String(), func(t *testing.T) {
			cmd := command([]string{"FAKE_HELPER=wait"}, "--device", "cuda", "train", "--preset", "gpt2-tiny")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the helper did not start: %q %v; stderr: %s", line, err, errb.String())
			}
			if err := cmd.Process.Signal(s); err != nil {
				t.Fatal(err)
			}
			code := exitCode(t, cmd.Wait())
			if code != 128+int(s) || !strings.Contains(errb.String(), "fake helper: got "+s.String()) {
				t.Fatalf("after %v: exit status %d, stderr %q", s, code, errb.String())
			}
		})
	}

	t.Run("no device", func(t *testing.T) {
		out, errs, code := runIt(command([]string{"FAKE_HELPER=echo", "FAKE_CUDA_INIT=100"}, "--device", "cuda", "train"))
		if code != 1 || out != "" || !strings.Contains(errs, "estkit: --device cuda: no CUDA device") || strings.Contains(errs, "fake helper") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
		out, errs, code = runIt(command([]string{"FAKE_HELPER=echo", "FAKE_CUDA_DEVICES=0"}, "gpu"))
		if code != 1 || out != "" || !strings.Contains(errs, "estkit: gpu: no CUDA device") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})

	t.Run("no helper", func(t *testing.T) {
		alone := filepath.Join(t.TempDir(), "estkit")
		b, err := os.ReadFile(estkit)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(alone, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := command([]string{"FAKE_HELPER=echo"}, "--device", "cuda", "sample", "--run", "r")
		cmd.Path = alone
		out, errs, code := runIt(cmd)
		if code != 1 || out != "" || !strings.Contains(errs, "built without CUDA and finds no estkit-cuda beside it ("+filepath.Join(filepath.Dir(alone), cudaHelper)+")") ||
			!strings.Contains(errs, "make cuda") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})

	t.Run("stays here", func(t *testing.T) {
		for _, args := range [][]string{
			{"--device", "cuda", "version"},
			{"train", "--device", "cuda", "--help"},
			{"--device", "cuda", "train", "--no-such-flag"},
			{"--device", "cpu", "eval"},
		} {
			_, errs, _ := runIt(command([]string{"FAKE_HELPER=echo"}, args...))
			if strings.Contains(errs, "fake helper") {
				t.Errorf("%q ran in the helper", args)
			}
		}
		if out, _, code := runIt(command([]string{"FAKE_HELPER=echo"}, "--device", "cuda", "version")); code != 0 || !strings.HasPrefix(out, "estkit ") {
			t.Errorf("version: %d %q", code, out)
		}
	})
}
