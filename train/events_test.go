package train

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/estkit/estkit/kernels/cpu"
)

// tfEvent is an Event as the test's own reader decodes it.
type tfEvent struct {
	wall    float64
	step    int64
	version string
	values  map[string]float32
}

// readTFEvents decodes an events file independently of events.go: the
// framing by hand from the format's description, the CRCs from hash/crc32's
// Castagnoli polynomial (anchored to TensorFlow's bytes by
// TestEventsRecordMatchesTensorFlow), and the protocol buffers with
// protowire, failing on anything a strict reader would.
func readTFEvents(b []byte) ([]tfEvent, error) {
	recs, err := readTFRecords(b)
	var out []tfEvent
	for _, r := range recs {
		e, err := decodeTFEvent(r.data)
		if err != nil {
			return out, fmt.Errorf("offset %d: %w", r.off, err)
		}
		out = append(out, e)
	}
	return out, err
}

// tfRecord is a record's data and offset in its file.
type tfRecord struct {
	data []byte
	off  int
}

// readTFRecords reads the TFRecords of b, their CRCs checked: those before
// the first error, and the error.
func readTFRecords(b []byte) ([]tfRecord, error) {
	table := crc32.MakeTable(crc32.Castagnoli)
	masked := func(p []byte) uint32 {
		c := crc32.Checksum(p, table)
		return ((c >> 15) | (c << 17)) + 0xa282ead8
	}
	var out []tfRecord
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return out, fmt.Errorf("offset %d: a record header cut short", off)
		}
		n := binary.LittleEndian.Uint64(b[off:])
		if got, want := binary.LittleEndian.Uint32(b[off+8:]), masked(b[off:off+8]); got != want {
			return out, fmt.Errorf("offset %d: length CRC %08x, want %08x", off, got, want)
		}
		if len(b)-off < 16 || n > uint64(len(b)-off-16) {
			return out, fmt.Errorf("offset %d: a record of %d bytes cut short", off, n)
		}
		data := b[off+12 : off+12+int(n)]
		if got, want := binary.LittleEndian.Uint32(b[off+12+int(n):]), masked(data); got != want {
			return out, fmt.Errorf("offset %d: data CRC %08x, want %08x", off, got, want)
		}
		out = append(out, tfRecord{data, off})
		off += 16 + int(n)
	}
	return out, nil
}

func decodeTFEvent(b []byte) (tfEvent, error) {
	e := tfEvent{values: map[string]float32{}}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.wall, b = math.Float64frombits(v), b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.step, b = int64(v), b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.version, b = string(v), b[n:]
		case num == 5 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			if err := decodeTFSummary(v, e.values); err != nil {
				return e, err
			}
			b = b[n:]
		default:
			return e, fmt.Errorf("unexpected Event field %d (wire type %d)", num, typ)
		}
	}
	return e, nil
}

func decodeTFSummary(b []byte, values map[string]float32) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return fmt.Errorf("unexpected Summary field %d (wire type %d)", num, typ)
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[n+m:]
		var tag string
		var val *float32
		for len(v) > 0 {
			num, typ, n := protowire.ConsumeTag(v)
			if n < 0 {
				return protowire.ParseError(n)
			}
			v = v[n:]
			switch {
			case num == 1 && typ == protowire.BytesType:
				s, n := protowire.ConsumeBytes(v)
				if n < 0 {
					return protowire.ParseError(n)
				}
				tag, v = string(s), v[n:]
			case num == 2 && typ == protowire.Fixed32Type:
				x, n := protowire.ConsumeFixed32(v)
				if n < 0 {
					return protowire.ParseError(n)
				}
				f := math.Float32frombits(x)
				val, v = &f, v[n:]
			default:
				return fmt.Errorf("unexpected Summary.Value field %d (wire type %d)", num, typ)
			}
		}
		if tag == "" || val == nil {
			return fmt.Errorf("a Summary.Value without tag or simple_value")
		}
		if _, dup := values[tag]; dup {
			return fmt.Errorf("tag %q twice in one Summary", tag)
		}
		values[tag] = *val
	}
	return nil
}

// tfFirstRecord is the first record of an events file TensorFlow 2 wrote
// (tf.summary.create_file_writer; the file is testdata of
// github.com/orktes/go-tensorboard): an Event of wall_time
// 1585499054.2... and file_version "brain.Event:2", framed with its masked
// CRC32Cs.
const tfFirstRecord = "1800000000000000a37f4b22" + "09000080eb32a0d7411a0d627261696e2e4576656e743a32" + "af5dfc92"

// TestEventsRecordMatchesTensorFlow: the record events.go writes for
// TensorFlow's first Event is TensorFlow's, byte for byte (the framing, both
// masked CRCs, the field order), and both readers read it and refuse it
// with any byte flipped.
func TestEventsRecordMatchesTensorFlow(t *testing.T) {
	want, _ := hex.DecodeString(tfFirstRecord)
	wall := math.Float64frombits(0x41d7a032eb800000)
	got := appendRecord(nil, encodeEvent(wall, 0, eventsVersion, nil))
	if !bytes.Equal(got, want) {
		t.Fatalf("record\n got %x\nwant %x", got, want)
	}
	evs, err := readTFEvents(want)
	if err != nil || len(evs) != 1 || evs[0].version != eventsVersion || evs[0].wall != wall {
		t.Fatalf("independent reader: %+v %v", evs, err)
	}
	if _, err := eventsEnd("tf", want, 0, "ckpt"); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		b := bytes.Clone(want)
		b[i] ^= 0x10
		if _, err := readTFEvents(b); err == nil {
			t.Fatalf("independent reader: byte %d flipped not seen", i)
		}
		if _, err := eventsEnd("tf", b, 0, "ckpt"); err == nil {
			t.Fatalf("eventsEnd: byte %d flipped not seen", i)
		}
	}
}

// eventsOf reads the run's one events file with the independent reader.
func eventsOf(t *testing.T, run string) (string, []tfEvent) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(run, "events.out.tfevents.*"))
	if err != nil || len(names) != 1 {
		t.Fatalf("%s: events files %v, %v", run, names, err)
	}
	b, err := os.ReadFile(names[0])
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readTFEvents(b)
	if err != nil {
		t.Fatalf("%s: %v", names[0], err)
	}
	return names[0], evs
}

// checkEvents checks the events against the run's metrics: a file_version
// record, then one Event per step with the step's scalars as float32.
func checkEvents(t *testing.T, evs []tfEvent, recs []StepRecord) {
	t.Helper()
	if len(evs) != len(recs)+1 || evs[0].version != eventsVersion || len(evs[0].values) != 0 {
		t.Fatalf("%d events (first %+v) for %d steps", len(evs), evs[0], len(recs))
	}
	saved := map[int][2]float64{} // per stage: FLOPs, full FLOPs so far
	for i, r := range recs {
		e := evs[i+1]
		s := saved[r.Stage]
		s[0], s[1] = s[0]+r.FLOPs.Blocks, s[1]+r.FullFLOPs.Blocks
		saved[r.Stage] = s
		want := map[string]float64{
			"train/loss": r.Loss, "train/lr": r.LR, "train/grad_norm": r.GradNorm,
			"perf/tokens_per_s": r.TokensPerS, "perf/data_wait_ms": r.DataWaitMS, "est/stage": float64(r.Stage),
			"est/flops_saved": 1 - r.FLOPs.Blocks/r.FullFLOPs.Blocks,
			fmt.Sprintf("est/flops_saved_stage_%d", r.Stage): 1 - s[0]/s[1],
		}
		if r.ValLoss != 0 {
			want["val/loss"] = r.ValLoss
		}
		if e.step != int64(r.Step) || len(e.values) != len(want) || e.wall < 1e9 {
			t.Fatalf("event %d: step %d, wall %v, values %v; want step %d, %v", i+1, e.step, e.wall, e.values, r.Step, want)
		}
		for tag, v := range want {
			if got, ok := e.values[tag]; !ok || got != float32(v) {
				t.Fatalf("step %d: %s = %v (present %v), metrics.jsonl says %v", r.Step, tag, got, ok, float32(v))
			}
		}
	}
}

// TestEventsFile: a run writes one events file, named as TensorBoard looks
// for them, whose every step's scalars are metrics.jsonl's; a run stopped
// after a checkpoint and resumed keeps that one file, cut back to the
// checkpoint and continued, with the uninterrupted run's values; a flipped
// byte is refused by resume (ErrCorrupt, naming the file) as by the
// independent reader; and a rank other than 0 resuming in the run
// directory writes no events.
func TestEventsFile(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	a, b := resumeIsExact(t, cpu.New(), cfg)
	host, _ := os.Hostname()
	for _, run := range []string{a, b} {
		name, evs := eventsOf(t, run)
		base := filepath.Base(name)
		if !strings.HasPrefix(base, "events.out.tfevents.") || !strings.HasSuffix(base, "."+host) {
			t.Fatalf("events file name %s", base)
		}
		checkEvents(t, evs, records(t, filepath.Join(run, "metrics.jsonl")))
	}
	_, ea := eventsOf(t, a)
	bname, eb := eventsOf(t, b)
	for i := range ea {
		for _, tag := range []string{"train/loss", "train/lr", "train/grad_norm", "val/loss", "est/flops_saved_stage_1"} {
			if ea[i].values[tag] != eb[i].values[tag] {
				t.Fatalf("event %d: %s %v uninterrupted, %v resumed", i, tag, ea[i].values[tag], eb[i].values[tag])
			}
		}
	}

	// rank 1 resumes in b and runs two more steps: b's events stay as
	// they are
	before, _ := os.ReadFile(bname)
	more := cfg
	more.Steps = 8
	s, err := OpenSession(context.Background(), cpu.New(), more, b, Options{Resume: true, Rank: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := s.NewStepper()
	for !s.Done() {
		r, err := st.Step(s.Steps(), s.Batches())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Record(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if after, _ := os.ReadFile(bname); !bytes.Equal(before, after) {
		t.Fatalf("rank 1 changed %s", bname)
	}
	if names, _ := filepath.Glob(filepath.Join(b, "events.out.tfevents.*")); len(names) != 1 {
		t.Fatalf("rank 1 left events files %v", names)
	}

	// a byte flipped in step 0's record: both readers refuse the file
	flipped := bytes.Clone(before)
	flipped[40+len(flipped[40:])/12] ^= 1
	if _, err := readTFEvents(flipped); err == nil || !strings.Contains(err.Error(), "CRC") {
		t.Fatalf("independent reader on a flipped byte: %v", err)
	}
	if err := os.WriteFile(bname, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cpu.New(), more, b, Options{Resume: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bname) || !strings.Contains(err.Error(), "move the file out") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("resume over a flipped byte (want the file named and what to do): %v", err)
	}
	// a byte flipped in the first record (the file's version) likewise
	flipped = bytes.Clone(before)
	flipped[20] ^= 1
	if err := os.WriteFile(bname, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cpu.New(), more, b, Options{Resume: true})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "offset 0") || !strings.Contains(err.Error(), "move the file out") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("resume over a flipped byte in the first record (want what to do): %v", err)
	}
}

// frames is an events file of the file_version record and one record per
// step in steps, as a run writes them.
func frames(steps ...int) []byte {
	b := appendRecord(nil, encodeEvent(1, 0, eventsVersion, nil))
	for _, s := range steps {
		r := StepRecord{Step: s, Loss: float64(s)}
		b = appendRecord(b, encodeEvent(float64(2+s), int64(s), "", stepScalars(&r, nil)))
	}
	return b
}

// TestEventsEnd: resuming keeps the records of the checkpoint's steps and
// cuts the rest, a torn last record among them; records that stop short of
// the checkpoint, or skip a step, are refused by name; a file that is not
// an events file is ErrCorrupt.
func TestEventsEnd(t *testing.T) {
	full := frames(0, 1, 2, 3)
	upTo2 := int64(len(frames(0, 1, 2)))
	torn := append(frames(0, 1, 2), full[upTo2:upTo2+9]...)
	for _, c := range []struct {
		name  string
		b     []byte
		steps int
		end   int64
		err   string
	}{
		{"cut after the checkpoint", full, 3, upTo2, ""},
		{"all", full, 4, int64(len(full)), ""},
		{"none", full, 0, int64(len(frames())), ""},
		{"torn past the checkpoint", torn, 3, upTo2, ""},
		{"torn before the checkpoint", torn, 4, 0, "first 3 steps (the record at offset"},
		{"short", frames(0, 1), 3, 0, "first 2 steps (then it ends)"},
		{"a step skipped", frames(0, 2, 3), 3, 0, "is step 2's"},
		{"not an events file", []byte("{\"step\": 0}\n"), 0, 0, "not an events file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			end, err := eventsEnd("run/events", c.b, c.steps, "run/checkpoints/step-00000003")
			if c.err == "" {
				if err != nil || end != c.end {
					t.Fatalf("end %d, %v; want %d", end, err, c.end)
				}
				if _, err := readTFEvents(c.b[:end]); err != nil {
					t.Fatalf("what is kept does not read: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "run/events") {
				t.Fatalf("got %v, want an error with %q", err, c.err)
			}
		})
	}
}

// TestEventsName: TensorBoard's name, whatever the host is called.
func TestEventsName(t *testing.T) {
	now := time.Unix(1700000000, 5)
	for host, want := range map[string]string{
		"gpu-7.example": "events.out.tfevents.1700000000.gpu-7.example",
		"":              "events.out.tfevents.1700000000.localhost",
		"a/b":           "events.out.tfevents.1700000000.a_b",
	} {
		if got := eventsName(now, host); got != want || !isEventsName(got) {
			t.Fatalf("host %q: %s, want %s", host, got, want)
		}
	}
}

// FuzzEventsEnd: whatever the file holds, resuming's reader returns an
// error or an end within the file, and what it keeps reads with the
// independent reader as records (the file_version one and one per step)
// whose Events' steps (other fields skipped) count from 0.
func FuzzEventsEnd(f *testing.F) {
	f.Add(frames(0, 1, 2, 3), 3)
	f.Add(frames(0, 1), 3)
	tf, _ := hex.DecodeString(tfFirstRecord)
	f.Add(tf, 0)
	f.Fuzz(func(t *testing.T, b []byte, steps int) {
		if steps < 0 || steps > 64 {
			return
		}
		end, err := eventsEnd("fuzz", b, steps, "ckpt")
		if err != nil {
			return
		}
		if end < 0 || end > int64(len(b)) {
			t.Fatalf("end %d of %d bytes", end, len(b))
		}
		recs, err := readTFRecords(b[:end])
		if err != nil || len(recs) != steps+1 {
			t.Fatalf("kept %d bytes: %d records, %v", end, len(recs), err)
		}
		for i, r := range recs[1:] {
			var step uint64
			for d := r.data; len(d) > 0; {
				num, typ, n := protowire.ConsumeField(d)
				if n < 0 {
					t.Fatalf("record %d: %v", i+1, protowire.ParseError(n))
				}
				if num == 2 && typ == protowire.VarintType {
					_, _, k := protowire.ConsumeTag(d)
					step, _ = protowire.ConsumeVarint(d[k:])
				}
				d = d[n:]
			}
			if step != uint64(i) {
				t.Fatalf("record %d is step %d", i+1, step)
			}
		}
	})
}

// TestResumeEvents: a run from before events files gets a new one (its
// file_version record only, the resumed steps to follow); an existing one
// is cut back to the checkpoint; two are refused by name.
func TestResumeEvents(t *testing.T) {
	dir := t.TempDir()
	e, err := resumeEvents(dir, 3, "step-00000003")
	if err != nil {
		t.Fatal(err)
	}
	e.close()
	name, evs := eventsOf(t, dir)
	if len(evs) != 1 || evs[0].version != eventsVersion {
		t.Fatalf("new events file: %+v", evs)
	}
	if err := os.WriteFile(name, frames(0, 1, 2, 3, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	if e, err = resumeEvents(dir, 3, "step-00000003"); err != nil {
		t.Fatal(err)
	}
	e.close()
	if _, evs = eventsOf(t, dir); len(evs) != 4 || evs[3].step != 2 {
		t.Fatalf("cut back to 3 steps: %d events", len(evs))
	}
	other := filepath.Join(dir, eventsName(time.Unix(1, 0), "elsewhere"))
	if err := os.WriteFile(other, frames(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resumeEvents(dir, 3, "step-00000003"); err == nil || !strings.Contains(err.Error(), filepath.Base(other)) || !strings.Contains(err.Error(), filepath.Base(name)) {
		t.Fatalf("two events files: %v", err)
	}
}
