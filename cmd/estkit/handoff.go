//go:build !cuda && !cudaemu

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/estkit/estkit/internal/mpi"
	"github.com/estkit/estkit/kernels/cuda"
)

// cudaHelper is the CUDA build of estkit (make cuda), installed beside
// estkit. It is a binary of its own because gorgonia.org/cu initialises
// the driver when the program loads and ends the process when that fails:
// linked into estkit, it would stop every command on a machine without a
// GPU (docs/ARCHITECTURE.md, "One estkit on every machine").
// The MPI build's helper, estkit-cuda-mpi (make cuda-mpi), is the CUDA
// build with MPI too, so that mpirun -np N estkit-mpi train --device cuda
// trains data parallel over NCCL (docs/SCALING.md, "NCCL on GPUs").
var cudaHelper = map[bool]string{false: "estkit-cuda", true: "estkit-cuda-mpi"}[mpi.Built]

// deviceCommands are the commands that run a model on --device; gpu
// describes the CUDA backend and always needs it.
var deviceCommands = map[string]bool{"train": true, "eval": true, "sample": true, "export": true}

// handOff runs a command line that needs the CUDA backend in estkit-cuda:
// it checks that the helper is beside this executable and that the
// machine has a driver and a device, then replaces this process with the
// helper (execve: same process id, arguments, environment, standard
// streams, signals and exit status, so that nothing differs from a CPU
// run). It returns done false for a command line that does not need CUDA,
// and exit status 1 after saying on stderr what is missing.
func handOff(args []string, stderr io.Writer) (code int, done bool) {
	what, ok := needsCUDA(args)
	if !ok {
		return 0, false
	}
	var missing []string
	helper, err := helperPath()
	if err != nil {
		missing = append(missing, err.Error())
	}
	if err := cuda.Probe(); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "estkit: %s: %s\n", what, strings.Join(missing, "; "))
		return 1, true
	}
	err = syscall.Exec(helper, append([]string{helper}, args...), os.Environ())
	fmt.Fprintf(stderr, "estkit: %s: starting %s: %v\n", what, helper, err)
	return 1, true
}

// needsCUDA says whether the command line runs on the CUDA backend, and
// names what asked for it. It parses the line with a command tree of its
// own (parsing twice into one tree would append repeated flags twice); a
// line that does not parse, or asks for help, runs here and says so.
func needsCUDA(args []string) (string, bool) {
	root, g := newRootCmd(io.Discard, io.Discard)
	c, rest, err := root.Find(args)
	if err != nil || c == root {
		return "", false
	}
	c.InitDefaultHelpFlag()
	if err := c.ParseFlags(rest); err != nil {
		return "", false
	}
	if help, _ := c.Flags().GetBool("help"); help {
		return "", false
	}
	switch {
	case c.Name() == "gpu":
		return "gpu", true
	case deviceCommands[c.Name()] && g.device == "cuda":
		return "--device cuda", true
	}
	return "", false
}

// helperPath returns estkit-cuda beside the running executable (symbolic
// links resolved, so a link to estkit on PATH finds the helper where
// estkit really is), or an error saying where it was looked for and how to
// get it.
func helperPath() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("this estkit has no CUDA backend, and the path of its executable to find %s beside is unknown: %w", cudaHelper, err)
	}
	helper := filepath.Join(filepath.Dir(exe), cudaHelper)
	if st, err := os.Stat(helper); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("this estkit was built without CUDA and finds no %s beside it (%s): build both with make cuda and install them together with make install (README.md, CUDA)", cudaHelper, helper)
	}
	return helper, nil
}
