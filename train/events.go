package train

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/estkit/estkit/internal/durable"
)

// The run's TensorBoard events file: the step records' scalars as
// TensorBoard's Event protocol buffers in TFRecord framing, so that
// `tensorboard --logdir RUN` (or any reader of the format) plots a run.
//
// The format (TensorFlow's core/lib/io/record_writer.cc and
// core/util/event.proto; TensorBoard's compat/proto copies): each record is
// a little-endian uint64 length, the masked CRC32C of those 8 bytes (uint32),
// the data, and the masked CRC32C of the data. The first record's Event
// carries file_version "brain.Event:2"; each later one a wall_time, the
// step and a Summary of {tag, simple_value} values.
//
// The few protobuf fields are encoded by hand (encoding/binary's varints):
// no Go module publishes TensorBoard's protos well kept (the ones that do
// wrap TensorFlow's C library or are abandoned), generating our own would
// bring protoc and generated code for five fields, and the encoding of
// those fields is fixed by the wire format. The tests decode what this
// writes with a second implementation (protowire, and Castagnoli CRCs
// computed independently of this file's framing).
//
// Crash-safety follows metrics.jsonl's: one record per step, appended, and
// fsynced before each checkpoint. On resume the file is read from the
// start, every record's CRCs checked, and cut after the record of the
// checkpoint's last step; the steps past it run again and are appended
// anew. A file that does not reach the checkpoint's step is refused (the
// run's other records are complete, and a plot with a hole would hide it).

// eventsPrefix starts the events file's name as TensorBoard looks for it:
// events.out.tfevents.<unix seconds>.<host>.
const eventsPrefix = "events.out.tfevents."

// eventsVersion is the file_version of the first record, which readers
// check (TensorBoard's EventFileLoader accepts "brain.Event:" versions).
const eventsVersion = "brain.Event:2"

// castagnoli is CRC32C's table, TFRecord's checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's masked CRC32C of b: rotated right by 15 bits and
// offset, so that a CRC over data holding CRCs stays well distributed
// (TensorFlow's crc32c::Mask).
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// appendRecord appends data framed as one TFRecord to dst.
func appendRecord(dst, data []byte) []byte {
	n := len(dst)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, maskedCRC(dst[n:]))
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, maskedCRC(data))
}

// Protobuf wire types and the field numbers of event.proto and
// summary.proto used here.
const (
	wireVarint, wireFixed64, wireBytes, wireFixed32 = 0, 1, 2, 5

	eventWallTime, eventStep, eventFileVersion, eventSummary = 1, 2, 3, 5
	summaryValue                                             = 1
	valueTag, valueSimpleValue                               = 1, 2
)

func appendKey(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field)<<3|uint64(wire))
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = appendKey(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// scalar is one Summary value.
type scalar struct {
	tag   string
	value float64
}

// encodeEvent is an Event of wall time wall (seconds since the epoch) at
// step with file_version version (if not empty) and the scalars.
func encodeEvent(wall float64, step int64, version string, scalars []scalar) []byte {
	var b []byte
	b = appendKey(b, eventWallTime, wireFixed64)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(wall))
	if step != 0 { // proto3: a zero is not written
		b = appendKey(b, eventStep, wireVarint)
		b = binary.AppendUvarint(b, uint64(step))
	}
	if version != "" {
		b = appendBytesField(b, eventFileVersion, []byte(version))
	}
	if len(scalars) > 0 {
		var sum, v []byte
		for _, s := range scalars {
			v = appendBytesField(v[:0], valueTag, []byte(s.tag))
			v = appendKey(v, valueSimpleValue, wireFixed32)
			v = binary.LittleEndian.AppendUint32(v, math.Float32bits(float32(s.value)))
			sum = appendBytesField(sum, summaryValue, v)
		}
		b = appendBytesField(b, eventSummary, sum)
	}
	return b
}

// stepScalars are the scalars of the step record r, with stage the
// statistics of r's stage so far (r included).
func stepScalars(r *StepRecord, stage *StageStats) []scalar {
	s := []scalar{
		{"train/loss", r.Loss},
		{"train/lr", r.LR},
		{"train/grad_norm", r.GradNorm},
		{"perf/tokens_per_s", r.TokensPerS},
		{"perf/data_wait_ms", r.DataWaitMS},
		{"est/stage", float64(r.Stage)},
	}
	if r.ValLoss != 0 {
		s = append(s, scalar{"val/loss", r.ValLoss})
	}
	// the fraction of the full model's block FLOPs (the paper's measure)
	// that EST saved: this step's, and the stage's so far, one curve per
	// stage
	if r.FullFLOPs.Blocks > 0 {
		s = append(s, scalar{"est/flops_saved", 1 - r.FLOPs.Blocks/r.FullFLOPs.Blocks})
	}
	if stage != nil && stage.FullFLOPs.Blocks > 0 {
		s = append(s, scalar{fmt.Sprintf("est/flops_saved_stage_%d", r.Stage), 1 - stage.FLOPs.Blocks/stage.FullFLOPs.Blocks})
	}
	return s
}

// isEventsName reports whether name is an events file's name.
func isEventsName(name string) bool { return strings.HasPrefix(name, eventsPrefix) }

// eventsFile is the run's events file, open for appending.
type eventsFile struct {
	f   *os.File
	buf []byte
}

// eventsName is the events file's name for a run started at now on host:
// TensorBoard's, with a path separator in the host name replaced.
func eventsName(now time.Time, host string) string {
	if host == "" {
		host = "localhost"
	}
	return eventsPrefix + fmt.Sprint(now.Unix()) + "." + strings.NewReplacer("/", "_", string(filepath.Separator), "_").Replace(host)
}

// createEvents creates a fresh run's events file in dir, its first record
// written.
func createEvents(dir string, now time.Time) (*eventsFile, error) {
	host, _ := os.Hostname() // a name only: without one, "localhost"
	f, err := os.OpenFile(filepath.Join(dir, eventsName(now, host)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	e := &eventsFile{f: f}
	wall := float64(now.UnixNano()) / 1e9
	if err := e.write(encodeEvent(wall, 0, eventsVersion, nil)); err != nil {
		f.Close()
		return nil, err
	}
	return e, nil
}

// findEvents lists the events files in dir.
func findEvents(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var names []string
	for _, e := range ents {
		if isEventsName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// resumeEvents opens the events file of the run in dir to resume after
// steps steps (checkpoint ckpt): its records are checked to the last of
// those steps and the rest (steps that will run again) cut off. A run
// written before estkit wrote events files has none: it gets a new one,
// whose records start at the resumed step.
func resumeEvents(dir string, steps int, ckpt string) (*eventsFile, error) {
	names, err := findEvents(dir)
	if err != nil {
		return nil, err
	}
	switch len(names) {
	case 0:
		e, err := createEvents(dir, time.Now())
		if err != nil {
			return nil, err
		}
		if err := durable.SyncDir(dir); err != nil { // the new name, as a fresh run's
			e.close()
			return nil, fmt.Errorf("train: %w", err)
		}
		return e, nil
	case 1:
	default:
		return nil, fmt.Errorf("train: %s holds %d events files (%s); a run writes one", dir, len(names), strings.Join(names, ", "))
	}
	path := filepath.Join(dir, names[0])
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	end, err := eventsEnd(path, b, steps, ckpt)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := f.Truncate(end); err != nil {
		f.Close()
		return nil, fmt.Errorf("train: %w", err)
	}
	return &eventsFile{f: f}, nil
}

// errTorn: a record cut short, as a crash leaves the last one.
var errTorn = errors.New("record cut short")

// readRecord reads the TFRecord at off in b: its data and the offset
// after it. A record cut short is errTorn, a checksum that does not match
// ErrCorrupt.
func readRecord(b []byte, off int) ([]byte, int, error) {
	if len(b)-off < 12 {
		return nil, 0, errTorn
	}
	head := b[off : off+8]
	if binary.LittleEndian.Uint32(b[off+8:]) != maskedCRC(head) {
		return nil, 0, fmt.Errorf("%w: the length's CRC does not match", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint64(head)
	if n > uint64(len(b)-off-12) || uint64(len(b)-off-12)-n < 4 {
		return nil, 0, errTorn
	}
	data := b[off+12 : off+12+int(n)]
	end := off + 12 + int(n)
	if binary.LittleEndian.Uint32(b[end:]) != maskedCRC(data) {
		return nil, 0, fmt.Errorf("%w: the data's CRC does not match", ErrCorrupt)
	}
	return data, end + 4, nil
}

// eventFields are the fields of an Event that resuming checks.
type eventFields struct {
	step    int64
	version string
}

// decodeEvent reads the step and file_version of the Event data, skipping
// the other fields.
func decodeEvent(data []byte) (eventFields, error) {
	var e eventFields
	for len(data) > 0 {
		key, n := binary.Uvarint(data)
		if n <= 0 {
			return e, fmt.Errorf("%w: a bad field key", ErrCorrupt)
		}
		data = data[n:]
		field, wire := key>>3, key&7
		var v uint64
		var bs []byte
		switch wire {
		case wireVarint:
			v, n = binary.Uvarint(data)
			if n <= 0 {
				return e, fmt.Errorf("%w: a bad varint", ErrCorrupt)
			}
			data = data[n:]
		case wireFixed64, wireFixed32:
			size := 8
			if wire == wireFixed32 {
				size = 4
			}
			if len(data) < size {
				return e, fmt.Errorf("%w: a field cut short", ErrCorrupt)
			}
			data = data[size:]
		case wireBytes:
			l, n := binary.Uvarint(data)
			if n <= 0 || l > uint64(len(data)-n) {
				return e, fmt.Errorf("%w: a field cut short", ErrCorrupt)
			}
			bs, data = data[n:n+int(l)], data[n+int(l):]
		default:
			return e, fmt.Errorf("%w: wire type %d", ErrCorrupt, wire)
		}
		switch {
		case field == eventStep && wire == wireVarint:
			e.step = int64(v)
		case field == eventFileVersion && wire == wireBytes:
			e.version = string(bs)
		}
	}
	return e, nil
}

// eventsEnd is where, in b (the events file at path), the records of
// steps 0 to steps-1 end: the file_version record, then one record per
// step in order, as createEvents and step write them. Records that stop
// short of steps are an error, as they are in metrics.jsonl (recordsEnd);
// a checksum that does not match within them is ErrCorrupt at its offset.
func eventsEnd(path string, b []byte, steps int, ckpt string) (int64, error) {
	data, off, err := readRecord(b, 0)
	var first eventFields
	if err == nil {
		first, err = decodeEvent(data)
	}
	if err != nil || !strings.HasPrefix(first.version, "brain.Event:") {
		if err == nil {
			err = fmt.Errorf("%w: no file_version", ErrCorrupt)
		}
		return 0, fmt.Errorf("train: %s: offset 0: not an events file's first record: %w (the file was changed or damaged since it was written; move the file out to resume with a new events file from step %d on, or --overwrite to start again)",
			path, err, steps)
	}
	for n := 0; n < steps; n++ {
		data, next, err := readRecord(b, off)
		var e eventFields
		if err == nil {
			e, err = decodeEvent(data)
		}
		if errors.Is(err, ErrCorrupt) {
			// the events are a copy of metrics.jsonl for plotting, so the
			// run need not stop for them: say how to go on
			return 0, fmt.Errorf("train: %s: offset %d: %w (the file was changed or damaged since it was written; move the file out to resume with a new events file from step %d on, or --overwrite to start again)",
				path, off, err, steps)
		}
		if err != nil || e.step != int64(n) {
			why := "then it ends"
			if err == nil {
				why = fmt.Sprintf("the record at offset %d is step %d's", off, e.step)
			} else if off < len(b) {
				why = fmt.Sprintf("the record at offset %d is cut short", off)
			}
			return 0, fmt.Errorf("train: %s holds the events of the first %d steps (%s), but checkpoint %s covers %d steps: records were lost; move the file out to resume with events from step %d on, or --overwrite to start again",
				path, n, why, filepath.Base(ckpt), steps, steps)
		}
		off = next
	}
	return int64(off), nil
}

// write appends the Event data as one record.
func (e *eventsFile) write(data []byte) error {
	e.buf = appendRecord(e.buf[:0], data)
	if _, err := e.f.Write(e.buf); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// step appends the step record r's scalars at wall time now; stage is the
// statistics of r's stage so far.
func (e *eventsFile) step(r *StepRecord, stage *StageStats, now time.Time) error {
	return e.write(encodeEvent(float64(now.UnixNano())/1e9, int64(r.Step), "", stepScalars(r, stage)))
}

// sync makes the records written so far durable.
func (e *eventsFile) sync() error {
	if err := e.f.Sync(); err != nil {
		return fmt.Errorf("train: %s: %w", e.f.Name(), err)
	}
	return nil
}

// close closes the file; nil does nothing.
func (e *eventsFile) close() {
	if e != nil {
		e.f.Close()
	}
}
