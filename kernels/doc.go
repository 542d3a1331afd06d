// Package kernels defines the op interface the trainers call (Ops: matrix
// products with transposes and scaling, bias, embedding, LayerNorm, GELU,
// causal attention, fused softmax cross-entropy, gathers and scatters of
// weight rows and columns for sampled subnetworks, AdamW), over opaque
// backend buffers (Buf) so that a GPU backend implements it a second time.
// kernels/cpu is the CPU implementation and the reference.
package kernels
