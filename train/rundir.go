package train

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/estkit/estkit/internal/durable"
	"github.com/estkit/estkit/shards"
)

// A run directory holds what a run writes (runFiles, checkpoints/ with
// checkpointFiles per step, the lock, and their temporary names) and
// perhaps files of the user's (a log appended to): a fresh run starts in
// an empty directory, Resume never touches the user's files, Overwrite
// removes the run's files and leaves the user's (the new run starts
// beside them), no run starts inside another's directory, and every reader checks config.json's format and
// the latest checkpoint's recorded hashes before it uses them.

// runFormat and runVersion mark a run's config.json as estkit's.
const (
	runFormat  = "estkit.run"
	runVersion = 1
)

// ConfigFile is config.json as a run writes it: the resolved configuration
// under a format marker. A --config file may be one (the marker is then
// ignored) or a bare Config.
type ConfigFile struct {
	Format  string `json:"format,omitempty"`
	Version int    `json:"version,omitempty"`
	Config
}

// UnmarshalJSON decodes the marker and hands the rest to Config's strict
// decoding (which, embedded, would otherwise see the marker's keys).
func (f *ConfigFile) UnmarshalJSON(b []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	for key, dst := range map[string]any{"format": &f.Format, "version": &f.Version} {
		if v, ok := top[key]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			delete(top, key)
		}
	}
	rest, err := json.Marshal(top)
	if err != nil {
		return err
	}
	return f.Config.UnmarshalJSON(rest)
}

// runFiles are the files and directories a run writes in its directory.
var runFiles = []string{"config.json", "metrics.jsonl", "lineage.jsonl", "stages.json", LossPlot, ckptDir, ".lock"}

// checkpointFiles are the files of a checkpoint directory.
var checkpointFiles = append(slices.Clone(tensorFiles), stepsFile, "state.json", checkpointManifest)

// configBytes is config.json's content for cfg, and the configuration's
// hash that checkpoints record (over the bare configuration, so that the
// marker's spelling never changes it).
func configBytes(cfg *Config) (file []byte, hash string, err error) {
	_, hash, err = cfg.encode()
	if err != nil {
		return nil, "", err
	}
	file, err = json.MarshalIndent(ConfigFile{Format: runFormat, Version: runVersion, Config: *cfg}, "", "  ")
	if err != nil {
		return nil, "", fmt.Errorf("train: %w: %w", ErrConfig, err)
	}
	return append(file, '\n'), hash, nil
}

// runIdentity is config.json's content and the configuration's hash for a
// run of cfg in out. A fresh run's are cfg's own. A resumed run's are its
// config.json's, which is never rewritten: cfg may differ from it only in
// the settings a resume may change (Resumable, which checkpoints record
// instead), and anything else is refused by name. A resume that extends
// the steps keeps the schedules' horizon (Config.Horizon).
func runIdentity(out string, cfg *Config, resume bool) ([]byte, string, error) {
	if !resume {
		return configBytes(cfg)
	}
	base, err := ReadRunConfig(out)
	if err != nil {
		return nil, "", err
	}
	if cfg.Steps != base.Steps && cfg.Horizon == 0 {
		cfg.Horizon = base.horizon()
	}
	x := *cfg
	resumableOf(base).apply(&x)
	x.Horizon = base.Horizon
	file, hash, err := configBytes(&x)
	if err != nil {
		return nil, "", err
	}
	if _, bh, err := configBytes(base); err != nil {
		return nil, "", err
	} else if bh != hash {
		return nil, "", fmt.Errorf("train: %w: %s/config.json differs in %s: --resume can change only the steps, evaluation and checkpoint settings; start a new run for the others",
			shards.ErrMismatch, out, strings.Join(configDiff(base, &x), ", "))
	}
	return file, hash, nil
}

// ReadRunConfig reads a run's config.json: it must carry estkit's run
// format (a Hugging Face config.json or another file is refused by name),
// decode without unknown fields, pass Check and, once the run has a
// checkpoint, be the file the latest checkpoint's manifest records
// (ErrCorrupt otherwise).
func ReadRunConfig(run string) (*Config, error) {
	cfg, cb, err := readRunConfig(run)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(run, ckptDir, latestName)); errors.Is(err, fs.ErrNotExist) {
		return cfg, nil // a run killed before its first checkpoint
	}
	dir, err := latestCheckpoint(run)
	if err != nil {
		return nil, err
	}
	m, err := readLatestManifest(run, dir)
	if err != nil {
		return nil, err
	}
	if err := checkConfigRecord(run, dir, cb, m); err != nil {
		return nil, withRecovery(run, dir, err)
	}
	return cfg, nil
}

// checkConfigRecord checks config.json's bytes cb against the record of
// the manifest m of checkpoint dir.
func checkConfigRecord(run, dir string, cb []byte, m *ckptManifest) error {
	h := sha256.Sum256(cb)
	if got := hex.EncodeToString(h[:]); got != m.Config.SHA256 || int64(len(cb)) != m.Config.Size {
		return fmt.Errorf("train: %s: %w: it is not the configuration %s was written under (sha256 %s, %s records %s)",
			filepath.Join(run, "config.json"), ErrCorrupt, filepath.Base(dir), got, filepath.Join(dir, checkpointManifest), m.Config.SHA256)
	}
	return nil
}

func readRunConfig(run string) (*Config, []byte, error) {
	path := filepath.Join(run, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("train: %s is not a run directory: %w", run, err)
	}
	if err := runConfigMarker(path, b); err != nil {
		return nil, nil, err
	}
	if err := checkConfigJSON(b, true); err != nil {
		return nil, nil, fmt.Errorf("train: %s: %w", path, err)
	}
	var f ConfigFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("train: %s: %w", path, jsonError(b, err))
	}
	cfg := f.Config
	cfg.Defaults()
	if err := cfg.Check(); err != nil {
		return nil, nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return &cfg, b, nil
}

// runConfigMarker checks that b, a config.json, carries estkit's run
// format and a version this estkit reads, and says what it is otherwise.
func runConfigMarker(path string, b []byte) error {
	var m struct {
		Format        string          `json:"format"`
		Version       int             `json:"version"`
		Architectures json.RawMessage `json:"architectures"`
		ModelType     json.RawMessage `json:"model_type"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	switch {
	case m.Format == runFormat && m.Version == runVersion:
		return nil
	case m.Format == runFormat:
		return fmt.Errorf("train: %s: run format version %d; this estkit reads version %d", path, m.Version, runVersion)
	case m.Architectures != nil || m.ModelType != nil:
		return fmt.Errorf("train: %s is a Hugging Face config.json, not an estkit run's", path)
	case m.Format == "":
		return fmt.Errorf("train: %s has no \"format\": %q: not an estkit run's configuration, or one written before runs carried their format (such a run cannot be read; train it again)", path, runFormat)
	}
	return fmt.Errorf("train: %s: format %q, not an estkit run's (%q)", path, m.Format, runFormat)
}

// stepName is the name of the checkpoint of a step.
func stepName(step int) string { return fmt.Sprintf("step-%08d", step) }

// parseStepName is the step of a checkpoint directory's name.
func parseStepName(name string) (int, bool) {
	d, ok := strings.CutPrefix(name, "step-")
	if !ok || len(d) < 8 {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(d)
	return n, err == nil && stepName(n) == name
}

// runSurvey is what a directory holds, by what a run writes.
type runSurvey struct {
	exists  bool
	foreign []string // paths (relative) that no run writes, or config.json when it is not a run's
	config  bool     // an estkit run's config.json
	steps   []string // checkpoint directories
	records []string // the run's other files
	temps   []string // temporary files and checkpoint directories a killed run left
}

// holdsRun reports whether the directory holds a run's files (beyond a
// lock and temporaries, which a run killed before it wrote its
// configuration leaves).
func (s *runSurvey) holdsRun() bool {
	return s.config || len(s.steps) > 0 || len(s.records) > 0
}

// describe lists up to five paths of a survey's list.
func describe(paths []string) string {
	if len(paths) > 5 {
		return strings.Join(paths[:5], ", ") + fmt.Sprintf(" and %d more", len(paths)-5)
	}
	return strings.Join(paths, ", ")
}

// surveyRun lists what dir holds: only reads.
func surveyRun(dir string) (*runSurvey, error) {
	s := &runSurvey{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	s.exists = true
	for _, e := range ents {
		name := e.Name()
		base, temp := strings.CutPrefix(name, durable.TmpPrefix)
		switch {
		case !(slices.Contains(runFiles, base) || isEventsName(base)) || (temp && (base == ckptDir || base == ".lock")):
			s.foreign = append(s.foreign, name)
		case base == ckptDir:
			if !e.IsDir() {
				s.foreign = append(s.foreign, name)
				continue
			}
			if err := s.surveyCheckpoints(filepath.Join(dir, ckptDir)); err != nil {
				return nil, err
			}
		case !e.Type().IsRegular():
			s.foreign = append(s.foreign, name) // a run writes these as regular files
		case temp:
			s.temps = append(s.temps, name)
		case base == "config.json":
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
			if err := runConfigMarker(filepath.Join(dir, name), b); err != nil {
				s.foreign = append(s.foreign, name+" ("+strings.TrimPrefix(err.Error(), "train: ")+")")
				continue
			}
			s.config = true
		case base != ".lock":
			s.records = append(s.records, name)
		}
	}
	return s, nil
}

// surveyCheckpoints lists a run's checkpoints directory.
func (s *runSurvey) surveyCheckpoints(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		rel := filepath.Join(ckptDir, name)
		base, temp := strings.CutPrefix(name, durable.TmpPrefix)
		_, step := parseStepName(base)
		switch {
		case base == latestName && e.Type().IsRegular():
			if temp {
				s.temps = append(s.temps, rel)
			} else {
				s.records = append(s.records, rel)
			}
		case step && e.IsDir():
			inner, err := os.ReadDir(filepath.Join(dir, name))
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			for _, f := range inner {
				if !slices.Contains(checkpointFiles, strings.TrimPrefix(f.Name(), durable.TmpPrefix)) || !f.Type().IsRegular() {
					s.foreign = append(s.foreign, filepath.Join(rel, f.Name()))
				}
			}
			if temp {
				s.temps = append(s.temps, rel)
			} else {
				s.steps = append(s.steps, rel)
			}
		default:
			s.foreign = append(s.foreign, rel)
		}
	}
	return nil
}

// EnclosingRun is the run directory that holds path (the nearest parent
// whose config.json is an estkit run's), if any: estkit writes no set or
// run inside a run, whose files are the run's alone. path itself is not
// considered (a run resumed or overwritten in place is its own).
func EnclosingRun(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err == nil && runConfigMarker(dir, b) == nil {
			return dir, true
		}
		if filepath.Dir(dir) == dir {
			return "", false
		}
	}
}

// claimRunDir decides from what out holds whether a run may start there
// as o asks, before anything is written: it is called once before the
// lock (to refuse early) and once under it (what counts).
func claimRunDir(out string, o Options) (*runSurvey, error) {
	if o.Resume && o.Overwrite {
		return nil, errors.New("train: --resume continues a run and --overwrite replaces it: give one")
	}
	if r, ok := EnclosingRun(out); ok {
		return nil, fmt.Errorf("train: --out %s is inside the run directory %s, whose files are that run's alone: give a directory outside it", out, r)
	}
	s, err := surveyRun(out)
	if err != nil {
		return nil, err
	}
	// Files no run writes beside a run (a log the user appends to) are
	// the user's: resume and overwrite leave them as they are.
	switch {
	case len(s.foreign) > 0 && !s.holdsRun():
		return nil, fmt.Errorf("train: %s is not empty and not an estkit run: it holds %s; give a new directory to --out", out, describe(s.foreign))
	case o.Resume && !s.config:
		return nil, fmt.Errorf("train: --resume: %s holds no run (no config.json)", out)
	case !o.Resume && !o.Overwrite && s.holdsRun():
		what := "a run"
		if len(s.steps) > 0 {
			what = fmt.Sprintf("a run with %d checkpoints (the last %s)", len(s.steps), filepath.Base(s.steps[len(s.steps)-1]))
		}
		return nil, fmt.Errorf("train: %s already holds %s: --resume continues it, --overwrite deletes it and starts again", out, what)
	}
	return s, nil
}

// removeRun deletes, for Overwrite, what the survey s of out found: the
// checkpoints, the records, then config.json last, so that a removal cut
// short leaves a directory that is still a run (and that Overwrite
// removes again). The lock and the checkpoints directory stay.
func removeRun(out string, s *runSurvey) error {
	var paths []string
	paths = append(paths, s.temps...)
	paths = append(paths, s.steps...)
	paths = append(paths, s.records...)
	if s.config {
		paths = append(paths, "config.json")
	}
	for _, p := range paths {
		if err := removeOwn(filepath.Join(out, p)); err != nil {
			return fmt.Errorf("train: --overwrite: %w", err)
		}
	}
	if err := durable.SyncDir(filepath.Join(out, ckptDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("train: %w", err)
	}
	if err := durable.SyncDir(out); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

// removeOwn removes a file a run wrote, or a checkpoint directory (or its
// temporary) with the files a checkpoint holds: a file of the user's in
// it stays, and the directory with it.
func removeOwn(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return os.Remove(path)
	}
	for _, name := range checkpointFiles {
		for _, n := range []string{name, durable.TmpPrefix + name} {
			if err := os.Remove(filepath.Join(path, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	return nil
}

// newRunID names a run in its checkpoints' manifests, so that pruning
// deletes only the run's own checkpoints.
func newRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// FileRecord is a file's size and sha256, as its writer committed it.
type FileRecord struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ckptManifest is a checkpoint's manifest.json, written last into the
// checkpoint's temporary directory.
type ckptManifest struct {
	Format     string       `json:"format"`  // "estkit.checkpoint"
	Version    int          `json:"version"` // 1
	Run        string       `json:"run"`     // the run's id, fixed when it started
	Step       int          `json:"step"`
	ConfigHash string       `json:"config_hash"` // the configuration's hash, as state.json has it
	Config     FileRecord   `json:"config"`      // the run's config.json
	Files      []FileRecord `json:"files"`       // the checkpoint's other files
	// SHA256 is the hex sha256 of the manifest as written with this field
	// empty: with the manifest's bytes being exactly what estkit writes,
	// a change of any byte is seen.
	SHA256 string `json:"sha256"`
}

const ckptFormat, ckptVersion = "estkit.checkpoint", 1

// encode is the manifest's bytes, its own hash filled in.
func (m *ckptManifest) encode() []byte {
	m.SHA256 = ""
	b, _ := json.MarshalIndent(m, "", "  ")
	h := sha256.Sum256(b)
	m.SHA256 = hex.EncodeToString(h[:])
	b, _ = json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// readManifest reads and checks a checkpoint directory's manifest: its
// bytes must be what encode writes for what it says, its hash its own.
func readManifest(dir string) (*ckptManifest, error) {
	path := filepath.Join(dir, checkpointManifest)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("train: %s: %w: no %s (a checkpoint of an estkit from before checkpoints carried manifests, which cannot be read; or a checkpoint cut short)", dir, ErrCorrupt, checkpointManifest)
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return parseManifest(path, b)
}

// parseManifest decodes and checks the bytes b of the manifest at path.
func parseManifest(path string, b []byte) (*ckptManifest, error) {
	var m ckptManifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("train: %s: %w: %v", path, ErrCorrupt, err)
	}
	if m.Format != ckptFormat || m.Version != ckptVersion {
		return nil, fmt.Errorf("train: %s: %w: format %q version %d, want %q version %d", path, ErrCorrupt, m.Format, m.Version, ckptFormat, ckptVersion)
	}
	sum := m.SHA256
	if !bytes.Equal(m.encode(), b) || m.SHA256 != sum {
		return nil, fmt.Errorf("train: %s: %w: its contents do not match its sha256", path, ErrCorrupt)
	}
	return &m, nil
}

// verifyFile checks path's size and full sha256 against its record.
func verifyFile(path string, r FileRecord, manifest string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if st.Size() != r.Size {
		return fmt.Errorf("train: %s: %w: %d bytes, %s records %d", path, ErrCorrupt, st.Size(), manifest, r.Size)
	}
	h := sha256.New()
	if _, err := f.WriteTo(h); err != nil {
		return fmt.Errorf("train: %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != r.SHA256 {
		return fmt.Errorf("train: %s: %w: sha256 %s, %s records %s", path, ErrCorrupt, got, manifest, r.SHA256)
	}
	return nil
}

// openedCheckpoint is a run's latest checkpoint, every file of it checked.
type openedCheckpoint struct {
	dir      string
	cfg      *Config // the run's config.json
	manifest *ckptManifest
	state    runState
}

// openCheckpoint reads run's config.json and latest checkpoint and checks
// them against the checkpoint's manifest: config.json, the tensors and
// state.json by size and full sha256, the state's step and configuration
// hash by value. Any difference is ErrCorrupt naming the file.
func openCheckpoint(run string) (*openedCheckpoint, error) {
	cfg, cb, err := readRunConfig(run)
	if err != nil {
		return nil, err
	}
	dir, err := latestCheckpoint(run)
	if err != nil {
		return nil, err
	}
	if _, err := readLatestManifest(run, dir); err != nil {
		return nil, err
	}
	c, err := checkCheckpoint(run, dir, cfg, cb)
	if err != nil {
		return nil, withRecovery(run, dir, err)
	}
	return c, nil
}

// readLatestManifest reads the manifest of dir, the checkpoint run's
// latest names, saying so when dir is missing, and adding to a failure
// the way back to an older intact checkpoint (withRecovery).
func readLatestManifest(run, dir string) (*ckptManifest, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, withRecovery(run, dir, fmt.Errorf("train: %w: checkpoint %s named by %s is missing", ErrCorrupt, filepath.Base(dir), filepath.Join(run, ckptDir, latestName)))
	}
	m, err := readManifest(dir)
	if err != nil {
		return nil, withRecovery(run, dir, err)
	}
	return m, nil
}

// withRecovery adds to err, the failure of run's latest checkpoint dir
// ("" when checkpoints/latest names none), the newest checkpoint that
// checks out in full and how to use it: older than dir where dir is
// there, any otherwise. The advice fits every reader (train --resume,
// eval, sample, export), since the library does not know which one asks.
// estkit moves and deletes none of them itself, nor picks one in latest's
// place: which to keep is the user's call.
func withRecovery(run, dir string, err error) error {
	return recoveryAdvice(run, dir, false, err)
}

// recoveryAdvice is withRecovery's; with notFile, checkpoints/latest is
// no file to write a name into (a directory, a link to none, a pipe), and
// the advice starts with taking it away: printf's redirection would fail
// on it, or write wherever a link points.
func recoveryAdvice(run, dir string, notFile bool, err error) error {
	older := newestIntact(run, dir)
	if older == "" {
		return err
	}
	base := filepath.Join(run, ckptDir)
	latest := filepath.Join(base, latestName)
	first := ""
	if notFile {
		first = fmt.Sprintf("remove %s, which is not a file (rm -r %s), then ", latest, latest)
	}
	move := ""
	if newer := newerSteps(base, older); len(newer) > 0 {
		// a resume from older writes their steps again, and refuses a
		// directory of such a name it cannot read; a reader needs no move
		move = fmt.Sprintf("; before resuming from it, move %s out of %s", strings.Join(newer, ", "), base)
	}
	return fmt.Errorf("%w; checkpoint %s is intact: %spoint latest at it to use it (printf %s > %s)%s", err, older, first, older, latest, move)
}

// newerSteps are the names in the checkpoint directory base of the steps
// after checkpoint name's, in order.
func newerSteps(base, name string) []string {
	after, _ := parseStepName(name)
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var steps []int
	for _, e := range ents {
		if step, ok := parseStepName(e.Name()); ok && step > after {
			steps = append(steps, step)
		}
	}
	slices.Sort(steps)
	var names []string
	for _, step := range steps {
		names = append(names, stepName(step))
	}
	return names
}

// newestIntact is the name of run's newest checkpoint that checks out in
// full against run's config.json as openCheckpoint checks the latest, or
// "": one older than dir where dir is there (a resume from an older one
// writes dir's step again), any where dir is "" or missing.
func newestIntact(run, dir string) string {
	cfg, cb, err := readRunConfig(run)
	if err != nil {
		return ""
	}
	latest := math.MaxInt
	if _, serr := os.Stat(dir); dir != "" && serr == nil {
		if step, ok := parseStepName(filepath.Base(dir)); ok {
			latest = step
		}
	}
	ents, err := os.ReadDir(filepath.Join(run, ckptDir))
	if err != nil {
		return ""
	}
	var older []int
	for _, e := range ents {
		if step, ok := parseStepName(e.Name()); ok && e.IsDir() && step < latest {
			older = append(older, step)
		}
	}
	slices.Sort(older)
	for _, step := range slices.Backward(older) {
		if _, err := checkCheckpoint(run, filepath.Join(run, ckptDir, stepName(step)), cfg, cb); err == nil {
			return stepName(step)
		}
	}
	return ""
}

// checkCheckpoint checks checkpoint dir of run against run's config.json
// (cfg, its bytes cb) and its own manifest, as openCheckpoint describes.
func checkCheckpoint(run, dir string, cfg *Config, cb []byte) (*openedCheckpoint, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := checkConfigRecord(run, dir, cb, m); err != nil {
		return nil, err
	}
	mpath := filepath.Join(dir, checkpointManifest)
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	want := slices.Clone(checkpointFiles[:len(checkpointFiles)-1])
	slices.Sort(want)
	if !slices.Equal(names, want) {
		return nil, fmt.Errorf("train: %s: %w: lists %v, a checkpoint holds %v", mpath, ErrCorrupt, names, want)
	}
	for _, f := range m.Files {
		if err := verifyFile(filepath.Join(dir, f.Name), f, mpath); err != nil {
			return nil, err
		}
	}
	c := &openedCheckpoint{dir: dir, cfg: cfg, manifest: m}
	spath := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(spath)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal(b, &c.state); err != nil {
		return nil, fmt.Errorf("train: %s: %w: %v", spath, ErrCorrupt, err)
	}
	_, hash, err := configBytes(cfg)
	if err != nil {
		return nil, err
	}
	if c.state.Step != m.Step || c.state.ConfigHash != m.ConfigHash || hash != m.ConfigHash {
		return nil, fmt.Errorf("train: %s: %w: step %d and configuration %s, %s records step %d and configuration %s (config.json's is %s)",
			spath, ErrCorrupt, c.state.Step, c.state.ConfigHash, mpath, m.Step, m.ConfigHash, hash)
	}
	if name := stepName(m.Step); name != filepath.Base(dir) {
		return nil, fmt.Errorf("train: %s: %w: step %d in checkpoint %s", mpath, ErrCorrupt, m.Step, filepath.Base(dir))
	}
	return c, nil
}

// checkCheckpointOptions refuses checkpoint settings that make no sense,
// before the run directory is touched.
func checkCheckpointOptions(c *Config) error {
	switch {
	case c.KeepCheckpoints < 1:
		return fmt.Errorf("train: keep_checkpoints %d: keep at least 1 (0: the default, 2)", c.KeepCheckpoints)
	case c.CheckpointEvery < 0:
		return fmt.Errorf("train: checkpoint_every %d: 0 (at the end only) or a number of steps", c.CheckpointEvery)
	}
	return nil
}

// runDir is a run directory a run writes: locked, its configuration
// written or checked, its records open.
type runDir struct {
	dir              string
	unlock           func()
	id               string     // the run's id in its checkpoints' manifests
	config           FileRecord // config.json's size and sha256
	metrics, lineage *os.File
	events           *eventsFile       // TensorBoard's view of metrics.jsonl
	ckpt             *openedCheckpoint // the checkpoint resumed from
}

// openRunDir locks out and readies it for a run of the configuration
// cfgFile (config.json's bytes) whose hash is hash: for a fresh run (with
// Overwrite, after removing the run there) it writes config.json and
// starts the records; to resume it checks the latest checkpoint in full
// and the records up to its step, and drops the records past it (steps
// that will run again).
func openRunDir(out string, cfgFile []byte, hash string, o Options) (_ *runDir, err error) {
	if err := os.MkdirAll(filepath.Join(out, ckptDir), 0o755); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	unlock, err := durable.Lock("train", out)
	if err != nil {
		return nil, err
	}
	rd := &runDir{dir: out, unlock: unlock}
	defer func() {
		if err != nil {
			rd.close()
		}
	}()
	s, err := claimRunDir(out, o)
	if err != nil {
		return nil, err
	}
	for _, p := range s.temps { // a killed run's, which no manifest names
		if err := removeOwn(filepath.Join(out, p)); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	if o.Resume {
		return rd, rd.resume(hash)
	}
	if o.Overwrite {
		if err := removeRun(out, s); err != nil {
			return nil, err
		}
	}
	if err := durable.WriteFile(out, "config.json", cfgFile); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	h := sha256.Sum256(cfgFile)
	rd.config = FileRecord{Name: "config.json", Size: int64(len(cfgFile)), SHA256: hex.EncodeToString(h[:])}
	rd.id = newRunID()
	for _, f := range []struct {
		name string
		dst  **os.File
	}{{"metrics.jsonl", &rd.metrics}, {"lineage.jsonl", &rd.lineage}} {
		if *f.dst, err = os.OpenFile(filepath.Join(out, f.name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	if rd.events, err = createEvents(out, time.Now()); err != nil {
		return nil, err
	}
	if err := durable.SyncDir(out); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return rd, nil
}

// resume opens the latest checkpoint, every file checked, and the records,
// which must reach its step.
func (rd *runDir) resume(hash string) error {
	c, err := openResumed(rd.dir, hash)
	if err != nil {
		return err
	}
	rd.ckpt, rd.id, rd.config = c, c.manifest.Run, c.manifest.Config
	var ends [2]int64
	for i, f := range []struct {
		name string
		dst  **os.File
	}{{"metrics.jsonl", &rd.metrics}, {"lineage.jsonl", &rd.lineage}} {
		path := filepath.Join(rd.dir, f.name)
		if *f.dst, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		if ends[i], err = recordsEnd(path, c.state.Step, c.dir); err != nil {
			return err
		}
	}
	// Records past the checkpoint belong to steps that will run again.
	for i, f := range []*os.File{rd.metrics, rd.lineage} {
		if err := f.Truncate(ends[i]); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	rd.events, err = resumeEvents(rd.dir, c.state.Step, c.dir)
	return err
}

// openResumed opens run's latest checkpoint, every file checked, to resume
// a run of the configuration whose hash is hash.
func openResumed(run, hash string) (*openedCheckpoint, error) {
	c, err := openCheckpoint(run)
	if err != nil {
		return nil, err
	}
	if c.state.ConfigHash != hash {
		return nil, fmt.Errorf("train: %w: %s was written under another configuration; resume with the run's config.json", shards.ErrMismatch, c.dir)
	}
	return c, nil
}

// recordsEnd is where the records of steps 0 to steps-1 end in path, a
// file of one JSON line per step in order. Records that do not reach steps
// (lost in a crash before they reached the disk, or cut) are an error:
// resuming over them would leave a run whose records miss steps.
func recordsEnd(path string, steps int, ckpt string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("train: %w", err)
	}
	n, off := 0, 0
	for n < steps {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			break
		}
		var r struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal(b[off:off+end], &r) != nil || r.Step == nil || *r.Step != n {
			break
		}
		n++
		off += end + 1
	}
	if n < steps {
		why := "then it ends"
		if off < len(b) {
			why = fmt.Sprintf("line %d is not step %d's", n+1, n)
		}
		return 0, fmt.Errorf("train: %s holds the records of the first %d steps (%s), but checkpoint %s covers %d steps: records were lost; the run cannot be resumed with complete records (--overwrite starts it again)",
			path, n, why, filepath.Base(ckpt), steps)
	}
	return int64(off), nil
}

// checkpoint writes the tensors, state and manifest into
// checkpoints/step-N through a temporary directory (removed should any of
// it fail), then points checkpoints/latest at it and prunes the run's
// older checkpoints to keep. The records it covers are fsynced first.
func (rd *runDir) checkpoint(m Model, st *runState, keep int) (err error) {
	for _, f := range []*os.File{rd.metrics, rd.lineage} {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("train: %s: %w", f.Name(), err)
		}
	}
	if err := rd.events.sync(); err != nil {
		return err
	}
	name := stepName(st.Step)
	base := filepath.Join(rd.dir, ckptDir)
	tmp := filepath.Join(base, durable.TmpPrefix+name)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	files, err := m.SaveTensors(tmp)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	b = append(b, '\n')
	if err := durable.WriteFile(tmp, "state.json", b); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	h := sha256.Sum256(b)
	files = append(files, FileRecord{Name: "state.json", Size: int64(len(b)), SHA256: hex.EncodeToString(h[:])})
	man := ckptManifest{Format: ckptFormat, Version: ckptVersion, Run: rd.id, Step: st.Step, ConfigHash: st.ConfigHash, Config: rd.config, Files: files}
	if err := durable.WriteFile(tmp, checkpointManifest, man.encode()); err != nil { // last: fsyncs the directory
		return fmt.Errorf("train: %w", err)
	}
	final := filepath.Join(base, name)
	if _, err := os.Stat(final); err == nil {
		// this run's, from before a resume that went back past it; a
		// directory of that name that is not is left alone
		if m, err := readManifest(final); err != nil || m.Run != rd.id {
			return fmt.Errorf("train: %s is in the way of this run's checkpoint and is not one of its own: move it out", final)
		}
		if err := removeOwn(final); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := durable.SyncDir(base); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := durable.WriteFile(base, latestName, []byte(name)); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return pruneCheckpoints(rd.dir, st.Step, keep, rd.id)
}

// close closes the records and releases the lock.
func (rd *runDir) close() {
	for _, f := range []*os.File{rd.metrics, rd.lineage} {
		if f != nil {
			f.Close()
		}
	}
	rd.events.close()
	rd.unlock()
}
