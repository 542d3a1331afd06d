package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeBuilds returns the commands make would run for the targets (make -n:
// nothing runs but the Makefile's $(shell ...)), those that go build
// estkit.
func makeBuilds(t *testing.T, makeTool string, env []string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(makeTool, append([]string{"-C", filepath.Join("..", ".."), "-n", "-s"}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("make -n %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	var builds []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, " build ") && strings.Contains(l, "./cmd/estkit") {
			builds = append(builds, strings.TrimSpace(l))
		}
	}
	return builds
}

// TestMakefileStampsVersion checks the Makefile itself (it is what stamps
// releases, so a test that built with ldflags of its own would prove
// nothing about it): every estkit binary make builds (make build, make
// cuda's estkit-cuda, make device-check's pair) is stamped with git
// describe --always --dirty and git rev-parse HEAD; make build's command,
// run as make prints it (with Go's VCS stamping off, as on the machines
// that printed "(devel)"), gives an estkit whose --version shows them;
// and without git on PATH the stamps are "unknown" and make still plans
// the builds.
func TestMakefileStampsVersion(t *testing.T) {
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make on PATH")
	}
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git on PATH")
	}
	root := filepath.Join("..", "..")
	gitOut := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(gitTool, append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Skipf("git %s: %v (not a git checkout?)", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(b))
	}
	describe, rev := gitOut("describe", "--always", "--dirty"), gitOut("rev-parse", "HEAD")
	stamp := "-X main.version=" + describe + " -X main.revision=" + rev

	bin := filepath.Join(t.TempDir(), "estkit")
	builds := makeBuilds(t, makeTool, os.Environ(), "build", "cuda", "device-check", "TAGS=", "BIN="+bin)
	var outs []string
	for _, b := range builds {
		if !strings.Contains(b, stamp) {
			t.Errorf("make builds estkit without %q:\n%s", stamp, b)
		}
		f := strings.Fields(b)
		for i := range f[:len(f)-1] {
			if f[i] == "-o" {
				outs = append(outs, filepath.Base(f[i+1]))
			}
		}
	}
	if want := "estkit estkit-cuda estkit-cuda estkit"; strings.Join(outs, " ") != want {
		t.Fatalf("make build cuda device-check builds %q, want %q:\n%s", outs, want, strings.Join(builds, "\n"))
	}

	if testing.Short() {
		t.Skip("-short: builds estkit")
	}
	cmd := exec.Command("/bin/sh", "-c", builds[0])
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", builds[0], err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil || m[1] != describe || m[2] != rev {
		t.Fatalf("make build's estkit --version: %q; want version %s, revision %s", out, describe, rev)
	}

	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	env = append(env, "PATH="+t.TempDir()) // no git (nor anything else) to find
	builds = makeBuilds(t, makeTool, env, "build", "TAGS=")
	if len(builds) != 1 || !strings.Contains(builds[0], "-X main.version=unknown -X main.revision=unknown") {
		t.Fatalf("without git: %q; want the stamps unknown", builds)
	}
}
