//go:build cuda || cudaemu

package cuda

import (
	"errors"
	"time"
	"unsafe"

	"github.com/estkit/estkit/kernels"
)

var _ kernels.Stager = (*Ops)(nil)

// event is a point in a stream's work, as the device marks it (a CUDA
// event on a GPU, a host timestamp on the emulator).
type event any

// streamDevice is what staging needs of a device besides device:
// page-locked host memory, a copy stream apart from the compute stream
// that every op runs on, and events to order the two and time the compute
// stream. On the emulator everything runs in order as it is queued:
// pinned memory is ordinary memory and the streams are one.
type streamDevice interface {
	pinned(bytes int) (unsafe.Pointer, error) // zeroed; never freed
	newEvent() (event, error)
	record(e event, onCopy bool) error     // e marks the copy stream's work so far, or the compute stream's
	streamWait(e event, onCopy bool) error // the work queued next on that stream waits for e
	hostWait(e event) error
	elapsed(from, to event) (time.Duration, error) // both passed
	uploadAsync(dst uintptr, src unsafe.Pointer, bytes int) error
}

// stageSlot is one micro-batch's staging: its page-locked host slices,
// their device copy, and the events that order and time it.
type stageSlot struct {
	ids, targets []int32 // page-locked, [capacity] each
	dev          uintptr // device: ids [capacity], then targets [capacity]
	n            int     // values staged
	// copied: the copy stream's work after this slot's copy; released:
	// the compute stream's after the last op that read it (recorded when
	// it stops being live); start and end: the compute stream's before
	// the Stage and after its Wait, for Waited.
	copied, released, start, end event
	hasReleased                  bool // released was recorded and the next copy must wait for it
	timed                        bool // start and end await Waited
}

// staging is an Ops's two slots, used in turn, so that one micro-batch is
// copied while the ops read the other.
type staging struct {
	slots  [2]stageSlot
	next   int           // the slot the next Stage fills
	staged int           // the slot the last Stage filled, until its Wait; -1: none
	live   int           // the slot the ops read; -1: none
	waited time.Duration // of slots reused before Waited read them
}

func (o *Ops) streams() (streamDevice, error) {
	sd, ok := o.dev.(streamDevice)
	if !ok {
		return nil, errors.New("the device has no streams")
	}
	if o.stage == nil {
		o.stage = &staging{staged: -1, live: -1}
	}
	return sd, nil
}

// grow readies slot s for n values: page-locked and device memory of
// twice n int32 and its events, made once (a longer batch makes new ones
// and leaves the old to the process, as the index scratch does).
func (o *Ops) grow(sd streamDevice, s *stageSlot, n int) error {
	if s.copied == nil {
		for _, e := range []*event{&s.copied, &s.released, &s.start, &s.end} {
			var err error
			if *e, err = sd.newEvent(); err != nil {
				return err
			}
		}
	}
	if len(s.ids) >= n {
		return nil
	}
	c := max(n, 1024)
	h, err := sd.pinned(8 * c)
	if err != nil {
		return err
	}
	d, err := o.dev.alloc(8 * c)
	if err != nil {
		return err
	}
	o.allocated += int64(8 * c)
	all := unsafe.Slice((*int32)(h), 2*c)
	s.ids, s.targets, s.dev = all[:c:c], all[c:], d
	return nil
}

// collect waits for the device to pass a timed slot's Wait and adds the
// time it waited to total.
func collect(sd streamDevice, s *stageSlot, total *time.Duration) error {
	if !s.timed {
		return nil
	}
	if err := sd.hostWait(s.end); err != nil {
		return err
	}
	d, err := sd.elapsed(s.start, s.end)
	if err != nil {
		return err
	}
	*total += d
	s.timed = false
	return nil
}

// Stage (kernels.Stager) fills the next slot through fill and queues its
// copy on the copy stream, behind the compute that last read the slot's
// device memory but nothing queued since.
func (o *Ops) Stage(n int, fill func(ids, targets []int32) error) ([]int32, []int32, error) {
	if o.err != nil {
		return nil, nil, o.err
	}
	sd, err := o.streams()
	if err != nil {
		o.fail("Stage", err)
		return nil, nil, o.err
	}
	st := o.stage
	i := st.next
	s := &st.slots[i]
	err = o.grow(sd, s, n)
	if err == nil { // the host slices are free once the device has passed the slot's last Wait (and so its copy)
		err = collect(sd, s, &st.waited)
	}
	if err == nil && st.live == i { // Stage twice without Wait: the ops stop reading this slot here
		err = sd.record(s.released, false)
		s.hasReleased, st.live = err == nil, -1
	}
	if err == nil {
		err = sd.record(s.start, false)
	}
	if err != nil {
		o.fail("Stage", err)
		return nil, nil, o.err
	}
	ids, targets := s.ids[:n:n], s.targets[:n:n]
	if err := fill(ids, targets); err != nil {
		return nil, nil, err
	}
	if s.hasReleased {
		err = sd.streamWait(s.released, true)
		s.hasReleased = false
	}
	if err == nil && n > 0 {
		err = sd.uploadAsync(s.dev, unsafe.Pointer(&ids[0]), 4*n)
		if err == nil {
			err = sd.uploadAsync(s.dev+uintptr(4*len(s.ids)), unsafe.Pointer(&targets[0]), 4*n)
		}
	}
	if err == nil {
		err = sd.record(s.copied, true)
	}
	if err != nil {
		o.fail("Stage", err)
		return nil, nil, o.err
	}
	s.n, st.staged, st.next = n, i, 1-i
	return ids, targets, nil
}

// Wait (kernels.Stager) makes the compute stream wait for the last
// Stage's copy and makes its slot the one the ops read, releasing the
// other.
func (o *Ops) Wait() error {
	if o.err != nil || o.stage == nil || o.stage.staged < 0 {
		return o.err
	}
	sd, err := o.streams()
	st := o.stage
	s := &st.slots[st.staged]
	if err == nil && st.live >= 0 {
		prev := &st.slots[st.live]
		err = sd.record(prev.released, false)
		prev.hasReleased = err == nil
	}
	if err == nil {
		err = sd.streamWait(s.copied, false)
	}
	if err == nil {
		err = sd.record(s.end, false)
	}
	if err != nil {
		o.fail("Wait", err)
		return o.err
	}
	s.timed, st.live, st.staged = true, st.staged, -1
	return nil
}

// Waited (kernels.Stager).
func (o *Ops) Waited() (time.Duration, error) {
	if o.err != nil || o.stage == nil {
		return 0, o.err
	}
	sd, err := o.streams()
	if err != nil {
		o.fail("Waited", err)
		return 0, o.err
	}
	st := o.stage
	total := st.waited
	for i := range st.slots {
		if err := collect(sd, &st.slots[i], &total); err != nil {
			o.fail("Waited", err)
			return 0, o.err
		}
	}
	st.waited = 0
	return total, nil
}

// staged is the device copy of v when v is the live slot's ids or
// targets, or a prefix of them; else 0.
func (o *Ops) staged(v []int32) uintptr {
	st := o.stage
	if st == nil || st.live < 0 || len(v) == 0 {
		return 0
	}
	s := &st.slots[st.live]
	if len(v) > s.n {
		return 0
	}
	switch unsafe.SliceData(v) {
	case unsafe.SliceData(s.ids):
		return s.dev
	case unsafe.SliceData(s.targets):
		return s.dev + uintptr(4*len(s.ids))
	}
	return 0
}
