// Package shards will hold token shards (Arrow IPC, tokens plus document
// lineage), their manifests and content addressing, and the prefetching
// Loader (deterministic shuffle, mixtures, exact resume). It knows nothing
// of models. It holds no code yet; docs/ARCHITECTURE.md tracks what has
// landed.
package shards
