package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/kernels/cuda"
)

// backend returns the kernels backend --device names.
func (g *globals) backend() (kernels.Ops, error) { return g.backendOn(0) }

// backendOn is backend for the process of local rank local on its
// machine: on the GPU local modulo the machine's GPUs, for a data-parallel
// rank (mpi.LocalRank).
func (g *globals) backendOn(local int) (kernels.Ops, error) {
	switch g.device {
	case "cpu":
		return cpu.New(), nil
	case "cuda":
		return cuda.NewDevice(local)
	}
	return nil, usageErrorf("--device %q: cpu or cuda", g.device)
}

func newGPUCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gpu",
		Short: "Describe the CUDA backend: the GPU, its driver and the cuBLAS library this binary loads",
		Long: `gpu opens the CUDA backend as training would and describes it: GPU 0, its
compute capability, the driver version and the cuBLAS library found
(ESTKIT_CUBLAS names one to load instead of libcublas.so.13, .12 or .11).
estkit runs it in estkit-cuda, the CUDA build beside it (make cuda builds
both); it fails, saying why, when that is missing, when the machine has no
NVIDIA driver or no GPU, or when the GPU is not usable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := cuda.New()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(g.stdout, o.Name())
			return err
		},
	}
}
