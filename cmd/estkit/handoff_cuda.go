//go:build cuda || cudaemu

package main

import "io"

// handOff: this build has the CUDA backend (the driver's, or the CPU
// emulator's) in process, so every command runs here.
func handOff(args []string, stderr io.Writer) (code int, done bool) { return 0, false }
