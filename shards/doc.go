// Package shards holds token shards (Arrow IPC files of token ids with
// document lineage), their manifests and content addressing (Build), the
// reading side (Open: memory-mapped files, integrity checks, a split as one
// token stream with lineage Spans), and the prefetching Loader
// (deterministic shuffle without replacement per epoch, sequential order,
// weighted mixtures, exact resume from a small State, disjoint streams per
// rank). It knows nothing of models. docs/FORMATS.md describes the files
// and the state; docs/ARCHITECTURE.md the design.
package shards
