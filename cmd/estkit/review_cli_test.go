package main

import (
	"bytes"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// executeAsync runs the command line in a goroutine; the result arrives on
// the returned channel with stderr.
func executeAsync(args ...string) (<-chan int, *syncBuffer) {
	errw := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- execute(args, io.Discard, errw) }()
	return done, errw
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// interruptUntilDone sends sig to this process every 200 ms until the
// command ends, and returns its exit status; it fails the test if the
// command runs on for 60 s. The test catches sig itself, so that neither
// a signal sent before execute installs its handler nor one after it
// restores the default action ends the test binary: the command must
// stop at whichever signal arrives once its handler is in place.
func interruptUntilDone(t *testing.T, done <-chan int, sig syscall.Signal) int {
	t.Helper()
	caught := make(chan os.Signal, 16)
	signal.Notify(caught, sig)
	defer signal.Stop(caught)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(60 * time.Second)
	for {
		select {
		case code := <-done:
			return code
		case <-caught:
		case <-tick.C:
			if err := syscall.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
		case <-limit:
			t.Fatalf("still running 60 s after the first %v", sig)
		}
	}
}

// allocated runs fn and returns the bytes it allocated (all goroutines).
func allocated(fn func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	fn()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// withStdin runs fn with os.Stdin replaced by f.
func withStdin(f *os.File, fn func()) {
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	fn()
}

// TestTokenizerNotAFileRefused: --tokenizer naming a FIFO, /dev/zero, a
// tokenizer.model symlink to /dev/zero or a file past the size cap is
// refused at once, naming the path, for every command that loads one;
// they used to block on the FIFO or read /dev/zero without end.
func TestTokenizerNotAFileRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "tokenizer.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "zero", "tokenizer.model")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big", "tokenizer.model")
	if err := os.MkdirAll(filepath.Dir(big), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(300 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	docs := filepath.Join(dir, "docs") // never reached: the tokenizer is refused first
	for _, c := range []struct{ path, want string }{
		{fifo, "FIFO"}, {"/dev/zero", "character device"}, {link, "character device"}, {filepath.Dir(link), "character device"}, {big, "256 MiB"},
	} {
		for _, args := range [][]string{
			{"tokenize", "--tokenizer", c.path, "--input", "/dev/null"},
			{"shard", "--tokenizer", c.path, "--out", filepath.Join(dir, "tok"), docs},
		} {
			t.Run(args[0]+" "+c.path, func(t *testing.T) {
				var code int
				var errs *syncBuffer
				n := allocated(func() {
					done, e := executeAsync(args...)
					errs = e
					select {
					case code = <-done:
					case <-time.After(30 * time.Second):
						t.Fatalf("still running after 30 s")
					}
				})
				if code == 0 {
					t.Fatalf("accepted")
				}
				if msg := errs.String(); !strings.Contains(msg, c.want) || !strings.Contains(msg, "tokenizer") {
					t.Fatalf("error %q does not say %q", msg, c.want)
				}
				if n > 64<<20 {
					t.Fatalf("allocated %d MiB refusing it", n>>20)
				}
			})
		}
	}
}

// TestTokenizeInputBounded: tokenize reads standard input (as one text,
// or as JSON lines) and --input files with a bounded line size: /dev/zero
// is refused with an error naming the input, the line and the cap, having
// allocated a small multiple of the cap; it used to read all of standard
// input (gigabytes) or grow a line buffer to 1 GiB.
func TestTokenizeInputBounded(t *testing.T) {
	for _, c := range []struct {
		name  string
		args  []string
		stdin bool
		want  []string
	}{
		{"stdin as one text", []string{"tokenize"}, true, []string{"standard input", "64 MiB"}},
		{"stdin as JSON lines", []string{"tokenize", "--input", "-"}, true, []string{"standard input", "line 1", "64 MiB"}},
		{"--input /dev/zero", []string{"tokenize", "--input", "/dev/zero"}, false, []string{"/dev/zero", "line 1", "64 MiB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			zero, err := os.Open("/dev/zero")
			if err != nil {
				t.Fatal(err)
			}
			defer zero.Close()
			var code int
			var errs *syncBuffer
			n := allocated(func() {
				fn := func() {
					done, e := executeAsync(c.args...)
					errs = e
					select {
					case code = <-done:
					case <-time.After(60 * time.Second):
						t.Fatalf("still reading after 60 s")
					}
				}
				if c.stdin {
					withStdin(zero, fn)
				} else {
					fn()
				}
			})
			if code != 1 {
				t.Fatalf("exit status %d, want 1: %s", code, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs.String(), w) {
					t.Fatalf("error %q does not say %q", errs, w)
				}
			}
			if n > 512<<20 {
				t.Fatalf("allocated %d MiB for a 64 MiB line cap", n>>20)
			}
		})
	}
}

// TestTokenizeSIGINT: the first SIGINT stops tokenize reading an endless
// stream of JSON lines on standard input (exit 130); it used to read on.
func TestTokenizeSIGINT(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		line := []byte(`{"text": "hello world, a line of text to tokenize"}` + "\n")
		for {
			if _, err := w.Write(line); err != nil {
				return // the reader is closed: the test is over
			}
		}
	}()
	var code int
	withStdin(r, func() {
		done, _ := executeAsync("tokenize", "--input", "-", "--count")
		code = interruptUntilDone(t, done, syscall.SIGINT)
	})
	if code != exitInterrupted {
		t.Fatalf("exit status %d after SIGINT, want %d", code, exitInterrupted)
	}
}

// TestSampleSIGTERM: the first SIGTERM stops sample generating a hundred
// million tokens (exit 130); the generation loop used to run on.
func TestSampleSIGTERM(t *testing.T) {
	_, _, runDir, _ := trainedRun(t)
	done, errs := executeAsync("sample", "--run", runDir, "--prompt", "func", "--tokens", "100000000")
	if code := interruptUntilDone(t, done, syscall.SIGTERM); code != exitInterrupted {
		t.Fatalf("exit status %d after SIGTERM, want %d: %s", code, exitInterrupted, errs)
	}
}

// TestInvalidUTF8DirNamesRefused: a shard input, or the --out of ingest or
// shard, whose name is not valid UTF-8 is refused up front by name (its
// lineage would record U+FFFD for the byte), and nothing is created.
func TestInvalidUTF8DirNamesRefused(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "100000")
	bad := filepath.Join(dir, "docs\xff")
	if err := os.Rename(docs, bad); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		out  string
	}{
		{"shard input", []string{"-q", "shard", "--out", filepath.Join(dir, "tok"), bad}, filepath.Join(dir, "tok")},
		{"shard --out", []string{"-q", "shard", "--out", filepath.Join(dir, "tok\xfe"), bad[:len(bad)-1]}, filepath.Join(dir, "tok\xfe")},
		{"ingest --out", []string{"-q", "ingest", "--out", filepath.Join(dir, "d\xfe"), samples}, filepath.Join(dir, "d\xfe")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "shard --out" { // a valid input, so that only --out is wrong
				if err := os.Rename(bad, bad[:len(bad)-1]); err != nil {
					t.Fatal(err)
				}
				defer os.Rename(bad[:len(bad)-1], bad)
			}
			_, errs, code := run(t, c.args...)
			if code == 0 {
				t.Fatal("accepted")
			}
			if !strings.Contains(errs, "not valid UTF-8") {
				t.Fatalf("error %q does not say the name is not valid UTF-8", errs)
			}
			if _, err := os.Lstat(c.out); err == nil {
				t.Fatalf("%q was created", c.out)
			}
		})
	}
}

// TestIngestEarlyFailureCreatesNothing: ingest failing on its inputs
// leaves no --out directory behind when it made it; it used to leave one
// holding only .lock.
func TestIngestEarlyFailureCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	text := filepath.Join(dir, "text")
	for _, d := range []string{empty, text} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(text, "a.txt"), []byte("a document"), 0o644); err != nil {
		t.Fatal(err)
	}
	badName := filepath.Join(dir, "in\xff.txt")
	if err := os.WriteFile(badName, []byte("a document"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"nonexistent input", []string{filepath.Join(dir, "nothing")}},
		{"duplicate inputs", []string{text, text}},
		{"no input files", []string{empty}},
		{"invalid UTF-8 input name", []string{badName}},
		{"--format matching no file", []string{"--format", "parquet", text}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out")
			os.RemoveAll(out) // each case starts without it
			_, errs, code := run(t, append([]string{"-q", "ingest", "--out", out}, c.args...)...)
			if code == 0 {
				t.Fatal("accepted")
			}
			if _, err := os.Lstat(out); err == nil {
				t.Fatalf("the failed run (%s) left %s behind", strings.TrimSpace(errs), out)
			}
		})
	}
}

// TestNumericFlagsValidated: a numeric flag given a value it cannot mean
// (NaN, ±Inf, negative, zero where zero means nothing) is a usage error
// (exit 2) naming the flag, before any work; these used to be accepted.
func TestNumericFlagsValidated(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	missing := filepath.Join(dir, "missing") // never reached
	sample := []string{"sample", "--run", missing, "--prompt", "a"}
	ingest := []string{"ingest", "--out", out, missing}
	shard := []string{"shard", "--out", out, missing}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{append(sample, "--temperature", "NaN"), "--temperature"},
		{append(sample, "--temperature", "-1"), "--temperature"},
		{append(sample, "--temperature", "Inf"), "--temperature"},
		{append(sample, "--top-k", "-1"), "--top-k"},
		{append(sample, "--tokens", "-1"), "--tokens"},
		{append(sample, "--tokens", "0"), "--tokens"},
		{append(ingest, "--workers", "-1"), "--workers"},
		{append(ingest, "--max-doc-bytes", "0"), "--max-doc-bytes"},
		{append(ingest, "--max-doc-bytes", "-5"), "--max-doc-bytes"},
		{append(ingest, "--shard-bytes", "0"), "--shard-bytes"},
		{append(shard, "--workers", "-3"), "--workers"},
		{append(shard, "--shard-tokens", "0"), "--shard-tokens"},
		{append(shard, "--val-fraction", "NaN"), "--val-fraction"},
		{append(shard, "--val-fraction", "1"), "--val-fraction"},
		{[]string{"tokenize", "--workers", "-1", "--input", "/dev/null"}, "--workers"},
		{[]string{"inspect", missing, "--seq-len", "0"}, "--seq-len"},
		{[]string{"inspect", missing, "--seq", "-1"}, "--seq"},
		{[]string{"inspect", missing, "--doc", "-1"}, "--doc"},
	} {
		t.Run(strings.Join(c.args[len(c.args)-2:], " ")+" "+c.args[0], func(t *testing.T) {
			_, errs, code := run(t, c.args...)
			if code != exitUsage {
				t.Fatalf("exit status %d, want %d (usage): %s", code, exitUsage, errs)
			}
			if !strings.Contains(errs, c.flag) {
				t.Fatalf("error %q does not name %s", errs, c.flag)
			}
			if _, err := os.Lstat(out); err == nil {
				t.Fatal("--out was created")
			}
		})
	}
}

// TestSamplesOutOwnership: samples writes only into an empty directory or
// one an earlier samples run wrote (marked); a directory of the user's, or
// a samples directory the user has since added a file to, is refused by
// name and left byte-identical (the file used to be kept as part of the
// samples). --bytes 0 is a usage error.
func TestSamplesOutOwnership(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine")
	if err := os.MkdirAll(filepath.Join(mine, "openwebtext"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "openwebtext", "urlsf_subset00-1_data.xz"), []byte("my file"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	_, errs, code := run(t, "samples", "--out", mine, "--bytes", "100000")
	if code == 0 {
		t.Fatal("samples wrote into a directory of the user's")
	}
	if !strings.Contains(errs, mine) || !strings.Contains(errs, "openwebtext") {
		t.Fatalf("error %q does not name the directory and what is in it", errs)
	}
	sameTree(t, dir, before)

	fresh := filepath.Join(dir, "samples")
	if _, errs, code := run(t, "samples", "--out", fresh, "--bytes", "100000"); code != 0 {
		t.Fatalf("samples into a new directory: %s", errs)
	}
	first := tree(t, fresh)
	if _, errs, code := run(t, "samples", "--out", fresh, "--bytes", "100000"); code != 0 {
		t.Fatalf("samples again into its own output: %s", errs)
	}
	sameTree(t, fresh, first)

	added := filepath.Join(fresh, "slimpajama", "notes.txt")
	if err := os.WriteFile(added, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	before = tree(t, fresh)
	if _, errs, code := run(t, "samples", "--out", fresh, "--bytes", "100000"); code == 0 || !strings.Contains(errs, "notes.txt") {
		t.Fatalf("samples over a file the user added: status %d, %q", code, errs)
	}
	sameTree(t, fresh, before)

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "samples", "--out", file, "--bytes", "100000"); code == 0 || !strings.Contains(errs, "not a directory") {
		t.Fatalf("samples --out a file: status %d, %q", code, errs)
	}
	_, errs, code = run(t, "samples", "--out", filepath.Join(dir, "zero"), "--bytes", "0")
	if code != exitUsage || !strings.Contains(errs, "--bytes") {
		t.Fatalf("--bytes 0: status %d, %q", code, errs)
	}
}

// TestSamplesRerunAfterKill: a samples run killed after marking its
// directory and writing some files (the mark lists none yet) is completed
// by running it again.
func TestSamplesRerunAfterKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "samples")
	if _, errs, code := run(t, "samples", "--out", dir, "--bytes", "100000"); code != 0 {
		t.Fatal(errs)
	}
	want := tree(t, dir)
	// as a kill leaves it: the in-progress mark and part of the files
	if err := os.WriteFile(filepath.Join(dir, samplesMark), []byte(`{"format": "estkit.samples", "files": null}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "owt-parquet")); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "samples", "--out", dir, "--bytes", "100000"); code != 0 {
		t.Fatalf("rerun after a kill: %s", errs)
	}
	sameTree(t, dir, want)
}

// copyDir copies the files of src (one level: a set's directory) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShardDuplicateSetByKey: a copy of a document set given beside the
// set (same manifest key) is refused as the same input given twice,
// naming both paths; it used to be tokenized twice.
func TestShardDuplicateSetByKey(t *testing.T) {
	dir, _, docs := sampleDocs(t, "100000")
	cp := filepath.Join(dir, "docscopy")
	copyDir(t, docs, cp)
	out := filepath.Join(dir, "tok")
	_, errs, code := run(t, "-q", "shard", "--out", out, docs, cp)
	if code == 0 {
		t.Fatal("accepted a copy of the same document set")
	}
	for _, w := range []string{docs, cp, "same document set"} {
		if !strings.Contains(errs, w) {
			t.Fatalf("error %q does not say %q", errs, w)
		}
	}
	if _, err := os.Lstat(out); err == nil {
		t.Fatal("--out was created")
	}
}

// TestPipelineMessages: errors name what is wrong in the user's terms: a
// damaged document set is not called a token set, a directory with no set
// is not reported by "ingest", a dangling symlink as --out is named as
// one, and inspect flags that do not apply to what is inspected are usage
// errors instead of being ignored.
func TestPipelineMessages(t *testing.T) {
	tok, docs := tinyTokenSet(t)
	dir := t.TempDir()
	truncated, badManifest := filepath.Join(dir, "truncated"), filepath.Join(dir, "badmanifest")
	copyDir(t, docs, truncated)
	copyDir(t, docs, badManifest)
	shardsIn, _ := filepath.Glob(filepath.Join(truncated, "docs-*.arrow"))
	if len(shardsIn) == 0 {
		t.Fatal("no document shard")
	}
	if err := os.Truncate(shardsIn[0], 100); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(badManifest, "manifest.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "lt")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		want   []string
		unwant string
	}{
		{"shard of a truncated document shard", []string{"shard", "--out", filepath.Join(dir, "t1"), truncated}, 1,
			[]string{truncated, filepath.Base(shardsIn[0]), "document set"}, "token shard set"},
		{"shard of an unparseable document manifest", []string{"shard", "--out", filepath.Join(dir, "t2"), badManifest}, 1,
			[]string{filepath.Join(badManifest, "manifest.json")}, "token shard set"},
		{"inspect an unparseable document manifest", []string{"inspect", badManifest}, 1,
			[]string{filepath.Join(badManifest, "manifest.json")}, "token shard set"},
		{"inspect a bare directory", []string{"inspect", bare}, 1, []string{"inspect: " + bare}, "ingest:"},
		{"ingest --out a dangling symlink", []string{"ingest", "--out", dangling, docs}, 1, []string{dangling, "dangling symlink"}, "file exists"},
		{"shard --out a dangling symlink", []string{"shard", "--out", dangling, docs}, 1, []string{dangling, "dangling symlink"}, "file exists"},
		{"inspect docs --tokens", []string{"inspect", docs, "--tokens"}, exitUsage, []string{"--tokens", "token set"}, ""},
		{"inspect docs --seq", []string{"inspect", docs, "--seq", "1"}, exitUsage, []string{"--seq"}, ""},
		{"inspect tok --doc", []string{"inspect", tok, "--doc", "1"}, exitUsage, []string{"--doc", "document set"}, ""},
		{"inspect tok --split without --seq or --tokens", []string{"inspect", tok, "--split", "val"}, exitUsage, []string{"--split"}, ""},
		{"inspect tok --order without --seq", []string{"inspect", tok, "--order", "sequential"}, exitUsage, []string{"--order", "--seq"}, ""},
		{"inspect tok --seq-len with --tokens", []string{"inspect", tok, "--tokens", "--seq-len", "8"}, exitUsage, []string{"--seq-len", "--seq"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, code := run(t, c.args...)
			if code != c.code {
				t.Fatalf("exit status %d, want %d: %s", code, c.code, errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Fatalf("error %q does not say %q", errs, w)
				}
			}
			if c.unwant != "" && strings.Contains(errs, c.unwant) {
				t.Fatalf("error %q says %q", errs, c.unwant)
			}
		})
	}
}
