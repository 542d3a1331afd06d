package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses, as GNU tools use them: 2 for a command line estkit cannot
// make sense of (an unknown command or flag, a wrong number of arguments,
// a flag value that does not parse or is not one of its choices, a
// required flag missing), 1 for a command that ran and failed, 130 for one
// interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// Error kinds in --json mode's error object.
const (
	kindUsage       = "usage"
	kindError       = "error"
	kindInterrupted = "interrupted"
)

// usageError is a command line that asks for something estkit cannot do
// (exit status 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf makes a usageError; a command returns one for a flag value
// that is not one of its choices or flags that do not go together.
func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// markUsageErrors makes every failure before a command's own work a usage
// error: flags that do not parse (through the flag error function, which
// subcommands inherit), and, by noting in *ran when a command's RunE
// starts, the errors cobra returns before it (an unknown command, a wrong
// number of arguments, a required flag missing). Call it once the command
// tree is complete.
func markUsageErrors(root *cobra.Command, ran *bool) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error {
				if err := emptyPaths(cmd, args); err != nil {
					return err
				}
				*ran = true
				return run(cmd, args)
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// classify returns the exit status and the --json kind of a command's
// error; ran says whether the command's own work had started.
func classify(err error, ran bool) (int, string) {
	var u *usageError
	switch {
	case err == nil:
		return exitOK, ""
	case errors.Is(err, context.Canceled):
		return exitInterrupted, kindInterrupted
	case errors.As(err, &u) || !ran:
		return exitUsage, kindUsage
	}
	return exitFailure, kindError
}

// reportError writes err to stderr: in --json mode one JSON object
// {"error": ..., "kind": "usage" | "error" | "interrupted"} on a line of
// its own; otherwise "estkit: ..." and, for a usage error, where the
// command's help is.
func reportError(stderr io.Writer, err error, kind string, cmd *cobra.Command, jsonMode bool) {
	if jsonMode {
		msg := err.Error()
		if kind == kindInterrupted {
			msg = "interrupted"
		}
		b, _ := json.Marshal(struct {
			Error string `json:"error"`
			Kind  string `json:"kind"`
		}{msg, kind})
		fmt.Fprintf(stderr, "%s\n", b)
		return
	}
	switch kind {
	case kindInterrupted:
		fmt.Fprintln(stderr, "estkit: interrupted")
	case kindUsage:
		fmt.Fprintln(stderr, "estkit:", err)
		path := "estkit"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
	default:
		fmt.Fprintln(stderr, "estkit:", err)
	}
}

// jsonRequested says whether the command line asks for --json, read from
// the arguments themselves: a usage error can stop flag parsing before
// --json is reached (estkit inspect --bogus --json), and its report must
// still be JSON. Arguments after "--" are not flags.
func jsonRequested(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" {
			on = true
		} else if v, ok := strings.CutPrefix(a, "--json="); ok {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}

// pathFlags name files and directories wherever a command has them.
var pathFlags = map[string]bool{"out": true, "run": true, "hf": true, "config": true, "init-from": true, "tokenizer": true, "input": true, "cache": true}

// pathArgs are the commands whose arguments are all paths (inputs, sets,
// merge's output and parts).
var pathArgs = map[string]bool{"ingest": true, "shard": true, "inspect": true, "merge": true}

// emptyPaths refuses a path flag given as "" (an unset shell variable, as
// in --out "$RUN"): taken as a path it is the current directory, and
// `train --out ""` made that a half-made run before it failed.
func emptyPaths(cmd *cobra.Command, args []string) error {
	if pathArgs[cmd.Name()] && slices.Contains(args, "") {
		return usageErrorf("%s: an argument is \"\": want a path (an unset variable?)", cmd.Name())
	}
	var err error
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if err == nil && pathFlags[f.Name] && f.Value.String() == "" {
			err = usageErrorf("%s: --%s \"\": want a path (an unset variable?)", cmd.Name(), f.Name)
		}
	})
	return err
}
