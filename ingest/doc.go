// Package ingest turns raw pretraining corpora, in the formats people
// download them, into document shards: Arrow IPC files with one row per
// document holding its text and its lineage, plus a manifest.json.
//
// Contract and invariants:
//
//   - Every reader streams: no input file is ever held in memory whole. Memory
//     is bounded by (workers × queue depth × chunk size) plus the largest
//     document, which --max-doc-bytes bounds (see docs/PERF.md for the figure).
//   - Output is a pure function of the inputs' bytes and the options: the same
//     inputs and options give byte-identical shards and manifest (the timing
//     section aside) whatever the number of workers. Documents appear in input
//     order: inputs sorted by root then relative path, and each file in its own
//     order.
//   - Nothing is dropped without being counted: each document read is kept,
//     filtered (by reason) or rejected (by reason), and the manifest's counts
//     add up: read = kept + filtered + rejected documents. Stream-level faults
//     (a truncated archive) are counted as one rejection of their file.
//   - Writes are atomic: shards and the manifest are written to temporary
//     names, fsynced and renamed; the manifest is the commit point, and a
//     shard that no committed manifest names is never read.
//   - Errors caused by bad data name the file and the position in it and wrap
//     one of the sentinel errors below, so callers can test them with
//     errors.Is.
//
// The package knows nothing of tokenizers or training.
package ingest
