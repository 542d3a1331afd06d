package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// globals are the flags every command shares.
type globals struct {
	device  string
	quiet   bool
	json    bool
	verbose bool
	stdout  io.Writer
	stderr  io.Writer
	log     *slog.Logger
	prog    *progress
	ran     bool // a command's RunE started: errors before it are usage errors
}

func newRootCmd(stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "estkit",
		Short: "From raw corpora to a language model trained with Evolving Subnetwork Training",
		Long: `estkit ingests raw pretraining corpora (OpenWebText, SlimPajama, StarCoderData,
jsonl, parquet, text) into document shards with lineage, tokenizes them into
token shards, and trains GPT-2 and Llama models with Evolving Subnetwork
Training (Li et al., ICML 2024).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelInfo
			switch {
			case g.quiet:
				level = slog.LevelWarn
			case g.verbose:
				level = slog.LevelDebug
			}
			opts := &slog.HandlerOptions{Level: level}
			g.prog = newProgress(g)
			// Logs go through the progress bar so that a log line never
			// lands in the middle of a bar.
			lw := g.prog.logWriter()
			if g.json {
				g.log = slog.New(slog.NewJSONHandler(lw, opts))
			} else {
				g.log = slog.New(slog.NewTextHandler(lw, opts))
			}
			g.prog.log = g.log
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "log warnings and errors only, and show no progress")
	pf.BoolVar(&g.json, "json", false, "machine-readable output: logs as JSON lines on stderr, results as JSON on stdout")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log debug detail")
	pf.StringVar(&g.device, "device", "cpu", "the backend models run on: cpu, or cuda (GPU 0, or under mpirun the local rank's modulo the GPUs; through estkit-cuda, which make cuda builds beside estkit)")
	root.AddCommand(newVersionCmd(g), newIngestCmd(g), newInspectCmd(g), newSamplesCmd(g), newTokenizeCmd(g), newShardCmd(g), newMergeCmd(g), newTrainCmd(g), newExportCmd(g), newEvalCmd(g), newSampleCmd(g), newESTTraceCmd(g), newGPUCmd(g))
	// estkit --version prints what estkit version prints (cobra handles
	// the flag when Version is set; the flag is declared here for its help).
	root.Version = currentBuild().String()
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().Bool("version", false, "print the version line (as estkit version does) and exit")
	markUsageErrors(root, &g.ran)
	return root, g
}

// execute runs the command line and returns the process exit status: 0,
// 1 for a failure, 2 for a usage error, 130 when interrupted (exit.go).
func execute(args []string, stdout, stderr io.Writer) int {
	if code, done := handOff(args, stderr); done {
		return code
	}
	root, g := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default action so that a
		// second Ctrl-C ends the process at once.
		<-ctx.Done()
		stop()
	}()
	cmd, err := root.ExecuteContextC(ctx)
	code, kind := classify(err, g.ran)
	if err != nil {
		// a usage error may have stopped parsing before --json was read
		reportError(stderr, err, kind, cmd, g.json || kind == kindUsage && jsonRequested(args))
	}
	return code
}
