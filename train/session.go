package train

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"time"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/shards"
)

// Session is one process's part in a run: the configuration resolved once,
// the run directory locked, the data and its loader open, the model built
// (and resumed), and the run's state between steps. It is the only writer
// of the run's records (metrics.jsonl, lineage.jsonl, stages.json, the loss
// plot) and checkpoints, and of those only on the writing rank
// (Options.Rank 0): in a data-parallel run every process runs a Session and
// a Stepper over the same model, and the other ranks write nothing. A
// Stepper runs the steps; the Session records what each did (Record).
type Session struct {
	// Config is the run's configuration, resolved at open: defaults filled
	// in, checked, the rates the model realises, a resume's horizon.
	Config Config
	// Model is the model the run trains, at the resumed checkpoint's
	// weights and moments on Resume.
	Model Model

	ops  kernels.Ops
	out  string
	opts Options
	log  *slog.Logger
	// warnedEval: the capped evaluation was said once
	warnedEval bool
	data       []shards.Weighted
	loader     *shards.Loader
	rd         *runDir // the run directory, locked; nil on a rank that writes nothing
	st         runState

	startStep int       // steps done when the session opened
	savedStep int       // steps done at the last checkpoint (or at the open)
	start     time.Time // when it opened, for the progress's ETA
	// globalKey is the loader configuration hash a checkpoint's loader
	// state carries in a data-parallel run: one process's, since the
	// state is the global stream's (docs/SCALING.md, "Resuming").
	globalKey string
}

// writer reports whether the process o describes writes the run's files.
func (o Options) writer() bool { return o.Rank == 0 }

// OpenSession readies a run of cfg on ops in the run directory out as o
// asks: everything a user can get wrong (the configuration, the backend's
// precisions, the memory, the directory's contents) is refused before the
// directory is written. ctx stops the first check of the data sets' files
// (their sha256, all of their bytes). Close releases what it holds.
func OpenSession(ctx context.Context, ops kernels.Ops, cfg Config, out string, o Options) (_ *Session, err error) {
	if out == "" { // not the current directory: an unset variable, most likely
		return nil, fmt.Errorf("train: %w: no run directory (an empty path)", ErrConfig)
	}
	if o.Rank < 0 {
		return nil, fmt.Errorf("train: %w: rank %d: ranks count from 0", ErrConfig, o.Rank)
	}
	if o.Comm != nil && o.Comm.Rank() != o.Rank {
		return nil, fmt.Errorf("train: %w: rank %d, but the Comm's rank is %d", ErrConfig, o.Rank, o.Comm.Rank())
	}
	// the session's own copy of what it fills in (the data's keys): cfg
	// shares its slices with the caller's, and ranks in one process share
	// one caller
	cfg.Data = slices.Clone(cfg.Data)
	cfg.Ranks = 0 // the processes this run has, not those a config file or a resumed run had
	if o.world() > 1 {
		cfg.Ranks = o.world()
	}
	cfg.Defaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := setPrecisions(ops, &cfg); err != nil {
		return nil, err
	}
	if cfg.Activations == "bf16" { // before the run directory is touched
		if _, err := bf16Store(ops); err != nil {
			return nil, err
		}
	}
	warn := realise(&cfg) // realised rates into config.json
	if !o.Resume {
		warn = append(warn, cfg.Warnings()...) // said when the run starts, not again
	}
	for _, w := range warn {
		log.Warn(w)
	}
	if err := checkMemory(ops, &cfg, o.MemoryLimit); err != nil {
		return nil, err
	}
	if err := checkCheckpointOptions(&cfg); err != nil {
		return nil, err
	}
	if cfg.InitFrom != "" { // up front: a FIFO or device would block or read without end
		if st, err := os.Stat(cfg.InitFrom); err != nil {
			return nil, fmt.Errorf("train: --init-from: %w", err)
		} else if !st.IsDir() && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("train: --init-from: %s is not a regular file or a directory (%s): give a model directory or a safetensors file", cfg.InitFrom, st.Mode().Type())
		}
	}
	if err := pinData(cfg.Data); err != nil { // the keys are part of config.json
		return nil, err
	}
	cfgFile, hash, err := runIdentity(out, &cfg, o.Resume)
	if err != nil {
		return nil, err
	}
	if o.writer() {
		if _, err := claimRunDir(out, o); err != nil { // before the data is read; again under the lock
			return nil, err
		}
	}
	if o.world() > 1 { // every rank runs the same configuration
		if err := checkSame(o.Comm, "configuration hash", hashID(hash)); err != nil {
			return nil, err
		}
	}
	s := &Session{Config: cfg, ops: ops, out: out, opts: o, log: log, st: runState{ConfigHash: hash}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.openData(ctx); err != nil {
		return nil, err
	}
	if err := s.buildModel(); err != nil {
		return nil, err
	}
	ckpt, err := s.openRunDir(cfgFile, hash)
	if err != nil {
		return nil, err
	}
	if err := s.resume(ckpt); err != nil {
		return nil, err
	}
	s.startStep, s.savedStep, s.start = s.st.Step, s.st.Step, time.Now()
	return s, nil
}

// openData opens the data sets, each with the model's tokenizer, and
// checks that the first has a val split to evaluate on.
func (s *Session) openData(ctx context.Context) error {
	for _, d := range s.Config.Data {
		set, err := shards.OpenWith(d.Dir, shards.OpenOptions{Logger: s.log, Context: ctx})
		if err != nil {
			return err
		}
		s.data = append(s.data, shards.Weighted{Set: set, Weight: d.Weight})
		if err := checkKey(d, set.Manifest.Key); err != nil {
			return err
		}
		if v := set.Manifest.Tokenizer.VocabSize; v != s.Config.Model.Vocab {
			return fmt.Errorf("train: %s: %w: tokenizer %s has %d ids, the model %d", d.Dir, shards.ErrMismatch, set.Manifest.Tokenizer.Fingerprint, v, s.Config.Model.Vocab)
		}
	}
	return checkValSplit(s.data, &s.Config)
}

// pinData records in data each set's manifest key where it has none (a
// new run) and checks it where it has one (a resume, or a --config file
// that gives keys): a set rebuilt with other options or replaced since is
// refused, naming it and both keys. Two entries of one set (one key under
// two paths: a copy) are refused by name.
func pinData(data []Data) error {
	seen := map[string]string{}
	for i := range data {
		d := &data[i]
		m, err := shards.ReadManifest(d.Dir)
		if err != nil {
			return err
		}
		if err := checkKey(*d, m.Key); err != nil {
			return err
		}
		d.Key = m.Key
		if other, dup := seen[m.Key]; dup {
			return fmt.Errorf("train: %w: data sets %s and %s are the same set (manifest key %s): give each set once, with its weight", ErrConfig, other, d.Dir, m.Key)
		}
		seen[m.Key] = d.Dir
	}
	return nil
}

// checkKey refuses the set of d when its manifest key now is not the one
// the run recorded (none recorded: a run from before keys, unchecked).
func checkKey(d Data, key string) error {
	if d.Key != "" && d.Key != key {
		return fmt.Errorf("train: %w: data set %s has changed since the run recorded it: its manifest key is %s, the run's config.json records %s (rebuilt with other options or replaced; restore the set, or start a new run on it)",
			shards.ErrMismatch, d.Dir, key, d.Key)
	}
	return nil
}

// OpenData opens the run's i-th data set, checked to be the set the run
// recorded (its manifest key), for eval and sample.
func OpenData(cfg *Config, i int) (*shards.Set, error) {
	if i < 0 || i >= len(cfg.Data) {
		return nil, fmt.Errorf("train: %w: the run's configuration has %d data sets, not %d", ErrConfig, len(cfg.Data), i+1)
	}
	d := cfg.Data[i]
	set, err := shards.Open(d.Dir, false)
	if err != nil {
		return nil, err
	}
	if err := checkKey(d, set.Manifest.Key); err != nil {
		set.Close()
		return nil, err
	}
	return set, nil
}

// buildModel initialises the model from the run's seed, or from the
// Hugging Face weights it starts from.
func (s *Session) buildModel() error {
	cfg := &s.Config
	m, err := InitModel(s.ops, cfg.Model, cfg.Seed)
	if err != nil {
		return err
	}
	s.Model = m
	if err := m.SetBF16Activations(cfg.Activations == "bf16"); err != nil {
		return err
	}
	if cfg.InitFrom != "" {
		return LoadHF(m, cfg.InitFrom)
	}
	return nil
}

// openRunDir locks and readies the run directory on the writing rank and
// returns the checkpoint a resume starts from; another rank only reads
// that checkpoint (checked in full, as the writer checks it).
func (s *Session) openRunDir(cfgFile []byte, hash string) (*openedCheckpoint, error) {
	if !s.opts.writer() {
		if !s.opts.Resume {
			return nil, nil
		}
		return openResumed(s.out, hash)
	}
	rd, err := openRunDir(s.out, cfgFile, hash, s.opts)
	if err != nil {
		return nil, err
	}
	s.rd = rd
	return rd.ckpt, nil
}

// resume loads the checkpoint's tensors and state (nil: a fresh run) and
// opens the loader where the run left it.
func (s *Session) resume(ckpt *openedCheckpoint) error {
	cfg := &s.Config
	var loaderState *shards.State
	if s.opts.world() > 1 { // every rank resumes from the same step: the same checkpoint
		step := int64(-1)
		if ckpt != nil {
			step = int64(ckpt.state.Step)
		}
		if err := checkSame(s.opts.Comm, "resumed step", step); err != nil {
			return err
		}
	}
	if ckpt != nil {
		s.st = ckpt.state
		if s.st.Step > cfg.Steps {
			return fmt.Errorf("train: %w: steps %d: %s has done %d steps already", ErrConfig, cfg.Steps, ckpt.dir, s.st.Step)
		}
		if err := s.Model.LoadTensors(ckpt.dir, true); err != nil {
			return err
		}
		loaderState = &s.st.Loader
		s.log.Info("resumed", "checkpoint", ckpt.dir, "step", s.st.Step)
		if was, now := s.st.Arithmetic, arithmeticOf(s.ops); was != "" && now != "" && was != now {
			s.log.Warn(fmt.Sprintf("%s was written where the products summed as %s; here they sum as %s: the run goes on from it, and its last bits may differ from those of an uninterrupted run", ckpt.dir, was, now))
		}
		if s.opts.Resumed != nil {
			s.opts.Resumed(s.st.summary())
		}
	}
	settings := resumableOf(cfg)
	s.st.Settings = &settings // recorded by the next checkpoint
	s.st.Arithmetic = arithmeticOf(s.ops)
	lc := shards.Config{Data: s.data, B: cfg.Batch, T: cfg.Seq, Order: string(cfg.Order), Seed: cfg.Seed}
	if s.opts.world() > 1 {
		if err := s.rankLoaderState(lc, loaderState); err != nil {
			return err
		}
		lc.Rank, lc.World = s.opts.Rank, s.opts.world()
	}
	l, err := shards.NewLoader(lc, loaderState)
	if err != nil {
		return err
	}
	s.loader = l
	return nil
}

// rankLoaderState readies a data-parallel rank's loader: it keeps the
// global stream's key (the one-process loader's), and rewrites a resumed
// state, which is the global stream's whatever the number of ranks that
// wrote it, as this rank's, once it is checked to be the stream's.
func (s *Session) rankLoaderState(lc shards.Config, st *shards.State) error {
	key := func(lc shards.Config) (string, error) {
		l, err := shards.NewLoader(lc, nil)
		if err != nil {
			return "", err
		}
		defer l.Close()
		return l.State().Config, nil
	}
	var err error
	if s.globalKey, err = key(lc); err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	if st.Config != s.globalKey {
		return fmt.Errorf("train: %w: the checkpoint's loader state belongs to another configuration (data, weights, order, batch, seq or seed differ)", shards.ErrMismatch)
	}
	lc.Rank, lc.World = s.opts.Rank, s.opts.world()
	st.Config, err = key(lc)
	return err
}

// Steps is the number of steps the run has done: the next step's index.
func (s *Session) Steps() int { return s.st.Step }

// Done reports whether the run has done all its steps.
func (s *Session) Done() bool { return s.st.Step >= s.Config.Steps }

// Batches is the run's loader, which gives the Stepper its micro-batches.
func (s *Session) Batches() Batches { return s.loader }

// NewStepper is a Stepper of the session's model and configuration.
func (s *Session) NewStepper() *Stepper {
	st := NewStepper(s.Model, &s.Config)
	switch {
	case s.opts.world() > 1 && s.opts.Reducer != nil:
		st.Reducer = s.opts.Reducer // a device's own (NCCL); --overlap-reduce is the host path's
	case s.opts.world() > 1 && s.opts.OverlapReduce:
		st.Reducer = newOverlapper(s.opts.Comm, s.Config.Model.Layers)
	case s.opts.world() > 1:
		st.Reducer = &averager{comm: s.opts.Comm}
	}
	return st
}

// Record adds the step r to the run: the stage statistics, and on the
// writing rank an evaluation where the configuration asks for one, the
// step's lines of metrics.jsonl and lineage.jsonl, the progress callback
// and a checkpoint where one is due. r must be the run's next step.
func (s *Session) Record(r *StepResult) error {
	st, cfg := &s.st, &s.Config
	var global *shards.State // the global stream's loader state, in a data-parallel run
	if s.opts.world() > 1 {  // the whole step's record, from every rank's
		g, err := s.combine(r)
		if err != nil {
			return err
		}
		global = &g
	}
	rec := r.Record
	if rec.Step != st.Step {
		return fmt.Errorf("train: step %d recorded after %d steps", rec.Step, st.Step)
	}
	if err := diverged("loss", rec.Loss, rec.Step); err != nil { // before anything of the step is recorded
		return err
	}
	if err := diverged("gradient norm", rec.GradNorm, rec.Step); err != nil {
		return err
	}
	for _, sel := range r.Draws {
		st.count(rec.Stage, rec.Rates, sel, cfg)
	}
	st.Step++
	st.Tokens += r.Tokens
	st.Loader = s.loader.State() // after the step's last batch
	if global != nil {
		st.Loader = *global
	}
	rec.Tokens = st.Tokens
	stage := st.stage(rec.Stage, rec.Rates)
	stage.Steps++
	stage.Tokens += r.Tokens
	stage.FLOPs = stage.FLOPs.plus(rec.FLOPs)
	stage.FullFLOPs = stage.FullFLOPs.plus(rec.FullFLOPs)
	stage.Seconds += r.Elapsed.Seconds()
	stage.LastLoss = rec.Loss
	stage.PeakRSS = peakRSS()
	stage.Device = s.ops.Name()
	if s.rd == nil {
		return nil
	}
	if cfg.evalAt(st.Step) {
		v, n, err := evalLoss(s.Model, s.data, cfg)
		if err != nil {
			return err
		}
		if err := diverged("val loss", v, rec.Step); err != nil {
			return err
		}
		rec.ValLoss, rec.ValBatches = v, n
		if n < cfg.EvalBatches && !s.warnedEval {
			s.warnedEval = true
			s.log.Warn(fmt.Sprintf("eval_batches %d: the val split holds %d batches of %d×%d; each evaluation averages them all (val_batches in metrics.jsonl)", cfg.EvalBatches, n, cfg.Batch, cfg.Seq))
		}
	}
	if err := appendJSON(s.rd.metrics, rec); err != nil {
		return err
	}
	if err := appendJSON(s.rd.lineage, map[string]any{"step": rec.Step, "sequences": r.Sequences}); err != nil {
		return err
	}
	if err := s.rd.events.step(&rec, stage, time.Now()); err != nil {
		return err
	}
	if s.opts.Progress != nil {
		done := st.Step - s.startStep
		eta := time.Duration(float64(time.Since(s.start)) / float64(done) * float64(cfg.Steps-st.Step))
		s.opts.Progress(rec, eta)
	}
	if (cfg.CheckpointEvery > 0 && st.Step%cfg.CheckpointEvery == 0) || st.Step == cfg.Steps {
		if err := s.rd.checkpoint(s.Model, st, cfg.KeepCheckpoints); err != nil {
			return err
		}
		s.savedStep = st.Step
	}
	return nil
}

// Interrupted checkpoints the steps recorded since the last checkpoint,
// so that a run stopped by Ctrl-C or SIGTERM (a pre-emption) resumes where
// it stopped rather than at its last scheduled checkpoint, and returns
// cause. Call it only between steps, or after a Stepper.Step that ended
// with the interrupt (inside a forward or backward pass, before AdamW
// changed anything): the model and the state are then those of the last
// recorded step. Only the writing rank writes.
func (s *Session) Interrupted(cause error) error {
	if s.rd == nil || s.st.Step == s.savedStep {
		return cause
	}
	if err := s.rd.checkpoint(s.Model, &s.st, s.Config.KeepCheckpoints); err != nil {
		return errors.Join(cause, err)
	}
	s.savedStep = s.st.Step
	s.log.Info("checkpointed on the interrupt", "step", s.st.Step)
	return cause
}

// ErrDiverged marks a run whose loss or gradient norm is no longer a
// finite number: nothing of that step is recorded.
var ErrDiverged = errors.New("the run diverged")

// diverged refuses a value of a step that is not finite, which JSON
// cannot hold and which no later step recovers from.
func diverged(what string, v float64, step int) error {
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		return nil
	}
	return fmt.Errorf("train: %s is %v at step %d: %w; lower --lr (or raise --eps, or turn on --clip); the records and checkpoints stop at the step before", what, v, step, ErrDiverged)
}

// Finish writes stages.json and the loss plot (on the writing rank) and
// returns what the run did.
func (s *Session) Finish() (*Summary, error) {
	s.st.frequencies()
	if s.rd != nil {
		if err := s.st.writeStages(s.out); err != nil {
			return nil, err
		}
		if err := WriteLossPlot(s.out); err != nil {
			return nil, err
		}
	}
	sum := s.st.summary()
	sum.ResumedAt = s.startStep
	return sum, nil
}

// Close stops the loader, closes the records and the data sets and
// releases the lock; a second Close does nothing.
func (s *Session) Close() {
	if s.loader != nil {
		s.loader.Close()
		s.loader = nil
	}
	if s.rd != nil {
		s.rd.close()
		s.rd = nil
	}
	for i := len(s.data) - 1; i >= 0; i-- {
		s.data[i].Set.Close()
	}
	s.data = nil
}

// arithmeticOf names how ops' products sum ("" where it does not say).
func arithmeticOf(ops kernels.Ops) string {
	if a, ok := ops.(kernels.Arithmeticer); ok {
		return a.Arithmetic()
	}
	return ""
}
