package ingest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/estkit/estkit/internal/testwait"
)

// TestInputNotRegular: a file given directly that is a FIFO or a symlink to
// /dev/zero is refused by name at once; format detection used to block on
// the FIFO and read /dev/zero without end (1.5 GB).
func TestInputNotRegular(t *testing.T) {
	cases := map[string]func(p string) error{
		"dev-zero": func(p string) error { return os.Symlink("/dev/zero", p) },
		"fifo":     func(p string) error { return syscall.Mkfifo(p, 0o644) },
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "in.jsonl")
			if err := mk(p); err != nil {
				t.Skipf("cannot make a %s here: %v", name, err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := testwait.Within(t, "ingest of a "+name, 10*time.Second, func() error {
				_, err := Run(ctx, []string{p}, Options{OutDir: filepath.Join(dir, "out")})
				return err
			})
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("error %v, want a refusal naming %s", err, p)
			}
		})
	}
}

// TestInputNameNotUTF8: a file whose name is not valid UTF-8 is refused up
// front, given directly or found in a folder, before anything is written.
func TestInputNameNotUTF8(t *testing.T) {
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "direct", false: "walked"}[direct]
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "in")
			p := write(t, filepath.Join(root, "caf\xe9.jsonl"), []byte("{\"text\": \"x\"}\n"))
			arg := root
			if direct {
				arg = p
			}
			out := filepath.Join(base, "out")
			_, _, err := ingestDir(t, []string{arg}, Options{OutDir: out})
			if !errors.Is(err, ErrInvalidUTF8) || !strings.Contains(err.Error(), `caf\xe9`) {
				t.Fatalf("error %v, want %v naming the file", err, ErrInvalidUTF8)
			}
			if ents, _ := os.ReadDir(out); len(ents) > 1 { // the lock file at most
				t.Fatalf("output written: %v", ents)
			}
		})
	}
}

// TestDuplicateInputs: one file reached twice (the same name twice, a
// symlink beside its target, a hard link, nested roots) is refused by name.
func TestDuplicateInputs(t *testing.T) {
	line := []byte("{\"text\": \"once\"}\n")
	cases := []struct {
		name  string
		roots func(dir string) ([]string, error)
	}{
		{"same-name-twice", func(dir string) ([]string, error) {
			p := write(t, filepath.Join(dir, "a.jsonl"), line)
			return []string{p, p}, nil
		}},
		{"symlink", func(dir string) ([]string, error) {
			p := write(t, filepath.Join(dir, "a.jsonl"), line)
			l := filepath.Join(dir, "b.jsonl")
			return []string{p, l}, os.Symlink(p, l)
		}},
		{"hard-link", func(dir string) ([]string, error) {
			p := write(t, filepath.Join(dir, "a.jsonl"), line)
			l := filepath.Join(dir, "b.jsonl")
			return []string{p, l}, os.Link(p, l)
		}},
		{"symlink-in-folder", func(dir string) ([]string, error) {
			p := write(t, filepath.Join(dir, "d", "a.jsonl"), line)
			return []string{filepath.Join(dir, "d")}, os.Symlink(p, filepath.Join(dir, "d", "b.jsonl"))
		}},
		{"nested-roots", func(dir string) ([]string, error) {
			write(t, filepath.Join(dir, "d", "sub", "a.jsonl"), line)
			return []string{filepath.Join(dir, "d"), filepath.Join(dir, "d", "sub")}, nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			roots, err := c.roots(filepath.Join(dir, "in"))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = ingestDir(t, roots, Options{OutDir: filepath.Join(dir, "out")})
			if !errors.Is(err, ErrDuplicateInput) || !strings.Contains(err.Error(), "a.jsonl") {
				t.Fatalf("error %v, want %v naming the file", err, ErrDuplicateInput)
			}
		})
	}
}
