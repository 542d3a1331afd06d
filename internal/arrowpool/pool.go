// Package arrowpool is an Arrow allocator that recycles large buffers.
package arrowpool

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Allocator is an Arrow allocator that recycles large buffers (1 MiB and
// up, by power-of-two class) instead of leaving them to the garbage
// collector. Why: every record batch of ingest's shard writer needs a fresh
// text buffer of a few MiB, and fresh memory from the OS is paid for in
// page faults on first touch: 17% of ingest's CPU before this
// (docs/PERF.md); reading document shards and writing token shards are the
// same. It is safe for concurrent use.
// Buffers come back through Free when the writer releases a batch. A plain
// bounded free list, not a sync.Pool: the garbage collector empties a
// sync.Pool every other cycle, and at ingest's allocation rate that is
// several times per batch.
type Allocator struct {
	// Limit, when positive, is the largest buffer Allocate makes; a larger
	// request panics with an error wrapping ErrTooLarge (Arrow's readers
	// allocate what a file's metadata claims, and a damaged file can claim
	// a terabyte: the panic is recovered as a clear error, where the
	// allocation would have ended the process).
	Limit int
	small memory.Allocator
	mu    sync.Mutex
	free  [64][][]byte
}

const (
	poolMinBytes = 1 << 20
	poolPerClass = 4 // buffers kept per size class: bounds what the pool holds
)

// New returns an empty Allocator.
func New() *Allocator {
	return &Allocator{small: memory.NewGoAllocator()}
}

// ErrTooLarge: a buffer over the Allocator's Limit was asked for.
var ErrTooLarge = errors.New("arrowpool: buffer over the limit")

// Allocate returns a zeroed, 64-byte aligned buffer of size bytes, as
// memory.GoAllocator does.
func (a *Allocator) Allocate(size int) []byte {
	if a.Limit > 0 && (size > a.Limit || size < 0) {
		panic(fmt.Errorf("%w: %d bytes asked for, at most %d", ErrTooLarge, size, a.Limit))
	}
	if size < poolMinBytes {
		return a.small.Allocate(size)
	}
	c := bits.Len(uint(size - 1))
	a.mu.Lock()
	if n := len(a.free[c]); n > 0 {
		b := a.free[c][n-1][:size]
		a.free[c] = a.free[c][:n-1]
		a.mu.Unlock()
		clear(b)
		return b
	}
	a.mu.Unlock()
	raw := make([]byte, 1<<c+64)
	shift := int((64 - uintptr(unsafe.Pointer(&raw[0]))%64) % 64)
	return raw[shift : shift+size : shift+1<<c]
}

// Reallocate grows b to size, keeping its contents.
func (a *Allocator) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		old := len(b)
		b = b[:size]
		if size > old {
			clear(b[old:])
		}
		return b
	}
	n := a.Allocate(size)
	copy(n, b)
	a.Free(b)
	return n
}

// Free returns a pooled buffer for reuse; other buffers are left to the
// garbage collector.
func (a *Allocator) Free(b []byte) {
	c := cap(b)
	if c < poolMinBytes || c&(c-1) != 0 {
		return
	}
	k := bits.Len(uint(c - 1))
	a.mu.Lock()
	if len(a.free[k]) < poolPerClass {
		a.free[k] = append(a.free[k], b[:c])
	}
	a.mu.Unlock()
}
