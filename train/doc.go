// Package train holds model configurations and presets, the parameter
// table, forward and backward passes built from kernel ops (GPT-2 so far,
// with sampled subnetworks: blocks, attention heads and MLP neurons run on
// gathered weights, their gradients scattered back), and AdamW. It imports
// only the kernels interface; tests use kernels/cpu. The PyTorch reference
// that checks it is train/testdata/gpt2_ref.py.
package train
