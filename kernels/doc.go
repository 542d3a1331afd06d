// Package kernels will define the op interface the trainer calls (matrix
// products with row and column gathers, norms, attention, softmax
// cross-entropy, AdamW, ...); kernels/cpu and kernels/cuda implement it. It
// holds no code yet; docs/ARCHITECTURE.md tracks what has landed.
package kernels
