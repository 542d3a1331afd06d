//go:build cudaemu && !cuda

package cuda

// #include <stdlib.h>
import "C"

import (
	"errors"
	"time"
	"unsafe"
)

// The emulator's streams: it runs everything as it is queued, so the
// copy stream and the compute stream are one, an event is the host's
// clock when it was recorded, and a wait has nothing to wait for.

type emuEvent struct{ at time.Time }

func (emu) pinned(bytes int) (unsafe.Pointer, error) {
	p := C.calloc(C.size_t(bytes), 1)
	if p == nil {
		return nil, errors.New("out of host memory")
	}
	return p, nil
}

func (emu) newEvent() (event, error) { return &emuEvent{}, nil }

func (emu) record(e event, onCopy bool) error {
	e.(*emuEvent).at = time.Now()
	return nil
}

func (emu) streamWait(e event, onCopy bool) error { return nil }

func (emu) hostWait(e event) error { return nil }

func (emu) elapsed(from, to event) (time.Duration, error) {
	return to.(*emuEvent).at.Sub(from.(*emuEvent).at), nil
}

func (d emu) uploadAsync(dst uintptr, src unsafe.Pointer, bytes int) error {
	return d.upload(dst, src, bytes)
}
