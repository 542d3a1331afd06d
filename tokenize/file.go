package tokenize

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/estkit/estkit/internal/durable"
)

// MaxFileBytes is the largest tokenizer file (tokenizer.json,
// tokenizer.model, tokenizer_config.json) estkit reads. Real ones are at
// most tens of MB (Llama 3's tokenizer.json is 9 MB); the cap keeps a
// mistaken path (/dev/zero, a corpus named tokenizer.model) from reading
// gigabytes before failing to parse.
const MaxFileBytes = 256 << 20

// ErrFile: a tokenizer path that is not a regular file of at most
// MaxFileBytes.
var ErrFile = errors.New("tokenize: not a tokenizer file")

// readFile reads a tokenizer file: a regular file (following symlinks) of
// at most MaxFileBytes. The kind is checked before opening, so that a FIFO
// or a device is refused at once instead of blocking or streaming; the
// read is limited too, for a file that grows after the check.
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is %s, not a regular file", ErrFile, path, durable.Kind(st.Mode()))
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d MiB a tokenizer file may be", ErrFile, path, st.Size(), MaxFileBytes>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenize: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("tokenize: %s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%w: %s is more than the %d MiB a tokenizer file may be", ErrFile, path, MaxFileBytes>>20)
	}
	return b, nil
}
