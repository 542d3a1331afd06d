// Package train will hold model configurations and presets, forward and
// backward passes built from kernel ops, AdamW, schedules, the EST Sampler
// and Scheduler, FLOPs accounting, the training loop and run records. It
// imports only the kernels interface, never an implementation. It holds no
// code yet; docs/ARCHITECTURE.md tracks what has landed.
package train
