package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tinyTokenSet shards a few hundred kB of samples and returns the token
// set's directory and the document set's.
func tinyTokenSet(t *testing.T) (tok, docs string) {
	t.Helper()
	dir, _, docs := sampleDocs(t, "300000")
	tok = filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--val-fraction", "0.1", "--out", tok, docs); code != 0 {
		t.Fatalf("shard: %s", errs)
	}
	return tok, docs
}

// TestExitStatus: usage errors exit 2 (GNU), failures 1, help and
// version 0; a usage error says where the command's help is. Each error
// is also run with --json (at the end of the line, after any flag that
// stops parsing): stderr is then JSON lines, the last one the error
// object {"error", "kind"} and nothing on stdout.
func TestExitStatus(t *testing.T) {
	tok, docs := tinyTokenSet(t)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string // in the error
	}{
		{"unknown root flag", []string{"--bogus"}, 2, "unknown flag: --bogus"},
		{"unknown command flag", []string{"inspect", "--bogus", tok}, 2, "unknown flag: --bogus"},
		{"unknown command", []string{"nosuchcommand"}, 2, `unknown command "nosuchcommand"`},
		{"no argument", []string{"inspect"}, 2, "accepts 1 arg(s), received 0"},
		{"two arguments", []string{"inspect", tok, docs}, 2, "accepts 1 arg(s), received 2"},
		{"argument to a command without", []string{"version", "extra"}, 2, `unknown command "extra"`},
		{"flag value that does not parse", []string{"inspect", tok, "--seq-len", "abc"}, 2, `invalid argument "abc"`},
		{"bool flag value", []string{"--json=maybe", "version"}, 2, `invalid argument "maybe"`},
		{"required flag missing", []string{"ingest", docs}, 2, `required flag(s) "out" not set`},
		{"format not a choice", []string{"inspect", tok, "--tokens", "--format", "uint8"}, 2, `--format "uint8": want jsonl, int32, nanogpt, llmc`},
		{"split not a choice", []string{"inspect", tok, "--tokens", "--split", "test"}, 2, `--split "test": want train or val`},
		{"order not a choice", []string{"inspect", tok, "--seq", "0", "--order", "random"}, 2, `--order "random"`},
		{"--out without --tokens", []string{"inspect", tok, "--out", filepath.Join(t.TempDir(), "x.bin")}, 2, "--out applies to --tokens only"},
		{"missing set", []string{"inspect", missing}, 1, "no such file or directory"},
		{"document out of range", []string{"inspect", docs, "--doc", "100000000"}, 1, "out of range"},
		{"missing run", []string{"eval", "--run", missing}, 1, missing},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := run(t, c.args...)
			if code != c.code || !strings.HasPrefix(errs, "estkit: ") || !strings.Contains(errs, c.want) {
				t.Fatalf("%q: exit status %d, stderr %q; want %d and an error saying %q", c.args, code, errs, c.code, c.want)
			}
			if hint := "for usage."; (c.code == 2) != strings.Contains(errs, hint) {
				t.Fatalf("%q: usage hint %q present %v, want %v:\n%s", c.args, hint, !(c.code == 2), c.code == 2, errs)
			}
			if out != "" {
				t.Fatalf("%q: stdout %q", c.args, out)
			}

			args := append(append([]string{}, c.args...), "--json")
			if c.name == "bool flag value" {
				args = c.args // --json=maybe is the error
			}
			out, errs, code = run(t, args...)
			if c.name == "bool flag value" {
				if code != 2 || !strings.HasPrefix(errs, "estkit: ") {
					t.Fatalf("--json=maybe: a usage error in text (the mode is not known): %d %q", code, errs)
				}
				return
			}
			lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
			for _, l := range lines {
				if !json.Valid([]byte(l)) {
					t.Fatalf("%q: stderr line is not JSON: %q", args, l)
				}
			}
			var e map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil {
				t.Fatal(err)
			}
			kind := map[int]string{1: "error", 2: "usage"}[c.code]
			msg, _ := e["error"].(string)
			if code != c.code || len(e) != 2 || e["kind"] != kind || !strings.Contains(msg, c.want) || out != "" {
				t.Fatalf("%q: exit status %d, error object %v, stdout %q; want %d, {error: ...%s..., kind: %s}", args, code, e, out, c.code, c.want, kind)
			}
		})
	}
	for _, args := range [][]string{{}, {"--help"}, {"inspect", "--help"}, {"version"}, {"--version"}, {"inspect", tok}} {
		if _, errs, code := run(t, args...); code != 0 {
			t.Fatalf("%q: exit status %d: %s", args, code, errs)
		}
	}
}

// versionLine is estkit --version's format: estkit VERSION REVISION GO
// GOOS/GOARCH.
var versionLine = regexp.MustCompile(`^estkit (\S+) (\S+) (go\S+) (\S+/\S+)\n$`)

// TestVersionFlag: estkit --version prints what estkit version prints, one
// line of the documented fields; a stamped build shows its stamps; --json
// version is an object of the same fields.
func TestVersionFlag(t *testing.T) {
	for _, stamp := range [][2]string{{"", ""}, {"v1.2.3-4-gabcdef0-dirty", "abcdef0123456789abcdef0123456789abcdef01"}} {
		version, revision = stamp[0], stamp[1]
		flag, errs, code := run(t, "--version")
		if code != 0 || errs != "" {
			t.Fatalf("--version: exit status %d, %s", code, errs)
		}
		cmd, _, _ := run(t, "version")
		m := versionLine.FindStringSubmatch(flag)
		if m == nil || cmd != flag {
			t.Fatalf("--version %q, version %q: want one line %s", flag, cmd, versionLine)
		}
		if stamp[0] != "" && (m[1] != stamp[0] || m[2] != stamp[1]) {
			t.Fatalf("stamped %q %q, printed %q", stamp[0], stamp[1], flag)
		}
		out, _, code := run(t, "--json", "version")
		var b map[string]string
		if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b["version"] != m[1] || b["revision"] != m[2] || b["go"] != m[3] || b["platform"] != m[4] {
			t.Fatalf("--json version: %s", out)
		}
	}
	version, revision = "", ""
}

// TestClassify: the exit status and --json kind of each kind of error,
// interruption included (which TestESTTraceSIGINT runs for real).
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		ran  bool
		code int
		kind string
	}{
		{"none", nil, true, 0, ""},
		{"before the command ran", errors.New("unknown command"), false, 2, "usage"},
		{"usage error from the command", usageErrorf("--x: want y"), true, 2, "usage"},
		{"failure", errors.New("disk full"), true, 1, "error"},
		{"interrupted", fmt.Errorf("est-trace: %w", context.Canceled), true, 130, "interrupted"},
	} {
		code, kind := classify(c.err, c.ran)
		if code != c.code || kind != c.kind {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, kind, c.code, c.kind)
		}
	}
	var b strings.Builder
	reportError(&b, fmt.Errorf("est-trace: %w", context.Canceled), kindInterrupted, nil, true)
	if b.String() != `{"error":"interrupted","kind":"interrupted"}`+"\n" {
		t.Fatalf("interrupted in --json mode: %q", b.String())
	}
}

// shellWords splits an example line as a shell would, for the quoting
// examples use ("..." without escapes).
func shellWords(line string) []string {
	var words []string
	var w strings.Builder
	quoted, in := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				words = append(words, w.String())
				w.Reset()
			}
			in = false
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// TestHelpExamples: eval, sample and export show examples, and every
// example of every command is a command line estkit accepts (the
// command, its flags and values, its arguments, its required flags),
// read up to a shell comment or redirection.
func TestHelpExamples(t *testing.T) {
	root, _ := newRootCmd(io.Discard, io.Discard)
	for _, name := range []string{"eval", "sample", "export"} {
		if c, _, err := root.Find([]string{name}); err != nil || c.Example == "" {
			t.Errorf("%s has no examples in its help", name)
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "estkit ") {
				continue
			}
			for _, cut := range []string{" #", " >", " |"} {
				line, _, _ = strings.Cut(line, cut)
			}
			args := shellWords(line)[1:]
			fresh, _ := newRootCmd(io.Discard, io.Discard)
			cmd, rest, err := fresh.Find(args)
			if err == nil && cmd.Name() != c.Name() {
				err = fmt.Errorf("runs %s, not %s", cmd.Name(), c.Name())
			}
			if err == nil {
				err = cmd.ParseFlags(rest)
			}
			if err == nil {
				err = cmd.ValidateArgs(cmd.Flags().Args())
			}
			if err == nil {
				err = cmd.ValidateRequiredFlags()
			}
			if err != nil {
				t.Errorf("%s's example %q: %v", c.Name(), line, err)
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// TestTrainJSON: train --json is machine-readable throughout: every line
// of stderr is JSON (the configuration, the progress and the warnings as
// log records, not text), and the result on stdout has the snake_case
// keys of every other record (steps, tokens, stages).
func TestTrainJSON(t *testing.T) {
	tok, _ := tinyTokenSet(t)
	out, errs, code := run(t, "--json", "train", "--preset", "gpt2-tiny", "--data", tok, "--steps", "3", "--warmup", "5", "--batch", "2", "--seq", "16", "--est", "est-gpt2", "--overlap-reduce", "--out", filepath.Join(t.TempDir(), "r"))
	if code != 0 {
		t.Fatalf("train --json: exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimRight(errs, "\n"), "\n")
	var progress, config bool
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line is not JSON: %q", l)
		}
		progress = progress || m["msg"] == "step"
		config = config || m["msg"] == "configuration"
	}
	if !progress || !config {
		t.Errorf("no configuration or step records in stderr:\n%s", errs)
	}
	// options that cannot act are said, as records too
	for _, w := range []string{"warmup 5", "--overlap-reduce: one process"} {
		if !strings.Contains(errs, w) {
			t.Errorf("no warning %q in stderr:\n%s", w, errs)
		}
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout: %v: %q", err, out)
	}
	for _, k := range []string{"steps", "tokens", "stages"} {
		if _, ok := res[k]; !ok {
			t.Errorf("result has no %q: %v", k, res)
		}
	}
}
