package arrowpool

import (
	"errors"
	"testing"
	"unsafe"
)

// TestAllocator: buffers are zeroed and 64-byte aligned whether fresh or
// recycled; a freed large buffer is reused, at most poolPerClass of a class
// are kept; Reallocate keeps the contents.
func TestAllocator(t *testing.T) {
	a := New()
	check := func(b []byte, size int) {
		t.Helper()
		if len(b) != size {
			t.Fatalf("len %d, want %d", len(b), size)
		}
		if uintptr(unsafe.Pointer(&b[0]))%64 != 0 {
			t.Fatalf("buffer of %d bytes not 64-byte aligned", size)
		}
		for i, c := range b {
			if c != 0 {
				t.Fatalf("byte %d of a new buffer is %d", i, c)
			}
		}
	}
	const size = 3 << 20
	b := a.Allocate(size)
	check(b, size)
	for i := range b {
		b[i] = 0xab
	}
	a.Free(b)
	c := a.Allocate(size - 100) // same class
	check(c, size-100)
	if &c[0] != &b[0] {
		t.Fatal("a freed buffer of the same class was not reused")
	}
	var bufs [][]byte
	for range poolPerClass + 2 {
		bufs = append(bufs, a.Allocate(size))
	}
	for _, x := range bufs {
		a.Free(x)
	}
	if n := len(a.free[22]); n != poolPerClass {
		t.Fatalf("%d buffers kept in the class, want %d", n, poolPerClass)
	}
	small := a.Allocate(100)
	check(small, 100)
	small[0] = 7
	grown := a.Reallocate(2<<20, small)
	if grown[0] != 7 || len(grown) != 2<<20 {
		t.Fatalf("Reallocate lost the contents or the size: %d, %d", grown[0], len(grown))
	}
	for _, x := range grown[1:] {
		if x != 0 {
			t.Fatal("Reallocate's new bytes are not zero")
		}
	}
}

// TestLimit: a buffer over the limit (or of a negative size) is refused by
// a panic with an error wrapping ErrTooLarge; one at the limit is made.
func TestLimit(t *testing.T) {
	a := New()
	a.Limit = 2 << 20
	if b := a.Allocate(2 << 20); len(b) != 2<<20 {
		t.Fatalf("at the limit: %d bytes", len(b))
	}
	for _, size := range []int{2<<20 + 1, -1} {
		func() {
			defer func() {
				err, _ := recover().(error)
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Allocate(%d): panic %v, want ErrTooLarge", size, err)
				}
			}()
			a.Allocate(size)
			t.Fatalf("Allocate(%d) returned", size)
		}()
	}
}
