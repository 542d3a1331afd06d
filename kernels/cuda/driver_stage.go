//go:build cuda

package cuda

// #include <string.h>
// #include <cuda.h>
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	"gorgonia.org/cu"
)

// The driver's streams: the ops run on the legacy default stream (the
// compute stream, cuBLAS's too); staged batches are copied on a stream
// made non-blocking, so that it does not wait for the default stream's
// work, and ordered against it by events.

// pinned is page-locked host memory (cuMemHostAlloc, which
// gorgonia.org/cu does not bind): the only host memory the copy engine
// reads while the host goes on.
func (d *driver) pinned(bytes int) (unsafe.Pointer, error) {
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	var p unsafe.Pointer
	if r := C.cuMemHostAlloc(&p, C.size_t(bytes), 0); r != C.CUDA_SUCCESS {
		return nil, fmt.Errorf("page-locking %d bytes of host memory: CUresult %d", bytes, int(r))
	}
	C.memset(p, 0, C.size_t(bytes))
	return p, nil
}

// copyStream makes the copy stream at its first use.
func (d *driver) copyStream() (cu.Stream, error) {
	if d.copier == (cu.Stream{}) {
		s, err := cu.MakeStream(cu.NonBlocking)
		if err != nil {
			return s, fmt.Errorf("copy stream: %w", err)
		}
		d.copier = s
	}
	return d.copier, nil
}

func (d *driver) stream(onCopy bool) (cu.Stream, error) {
	if onCopy {
		return d.copyStream()
	}
	return cu.NoStream, nil
}

func (d *driver) newEvent() (event, error) {
	leave, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	return cu.MakeEvent(cu.DefaultEvent)
}

func (d *driver) record(e event, onCopy bool) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	s, err := d.stream(onCopy)
	if err != nil {
		return err
	}
	return e.(cu.Event).Record(s)
}

func (d *driver) streamWait(e event, onCopy bool) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	s, err := d.stream(onCopy)
	if err != nil {
		return err
	}
	return s.Wait(e.(cu.Event), 0)
}

func (d *driver) hostWait(e event) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	return e.(cu.Event).Synchronize()
}

func (d *driver) elapsed(from, to event) (time.Duration, error) {
	leave, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	ms, err := from.(cu.Event).Elapsed(to.(cu.Event))
	return time.Duration(ms * float64(time.Millisecond)), err
}

func (d *driver) uploadAsync(dst uintptr, src unsafe.Pointer, bytes int) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	s, err := d.copyStream()
	if err != nil {
		return err
	}
	return cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, int64(bytes), s)
}
