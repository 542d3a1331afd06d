//go:build !(openblas && cgo)

package cpu

// BLAS names the matrix product library in use: none, the pure-Go loops.
const BLAS = "go"

// arithmetic names the pure-Go products: each row of C is summed alike
// whatever the workers.
func arithmetic() string { return "pure-Go products" }
