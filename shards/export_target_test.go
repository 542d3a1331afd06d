package shards

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestExportRefusesOthersFiles: an export never writes over a file of
// another kind or replaces what is not a regular file: a set's manifest
// (through a symlink to the set too), a file in a directory that holds a
// set, a FIFO, a symlink to a device. Each is refused and left as it was.
func TestExportRefusesOthersFiles(t *testing.T) {
	docs := docSet(t, "go", 11, 64<<10)
	res := build(t, []string{docs}, Options{})
	other := build(t, []string{docs}, Options{ValFraction: 0.3})
	set, err := Open(res.Dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	st, err := set.Stream(Train)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	link := filepath.Join(dir, "setlink")
	os.Symlink(res.Dir, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	devlink := filepath.Join(dir, "null")
	os.Symlink("/dev/null", devlink)
	for _, target := range []string{
		filepath.Join(link, ManifestName),
		filepath.Join(other.Dir, ManifestName),
		filepath.Join(other.Dir, "tokens.bin"),
		filepath.Join(docs, "manifest.json"),
		fifo,
		devlink,
	} {
		before, _ := os.Lstat(target)
		if err := st.ExportFile(context.Background(), target, "nanogpt"); err == nil {
			t.Errorf("export to %s: no error", target)
		}
		after, _ := os.Lstat(target)
		if (before == nil) != (after == nil) || before != nil && (before.Mode() != after.Mode() || before.Size() != after.Size()) {
			t.Errorf("export to %s changed it", target)
		}
	}
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Fatal(err)
	}
}
