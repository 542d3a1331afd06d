//go:build !(openblas && cgo)

package cpu

// BLAS names the matrix product library in use: none, the pure-Go loops.
const BLAS = "go"
