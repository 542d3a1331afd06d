//go:build cuda

package cuda

// openNCCL joins the ranks' NCCL communicator on this driver's GPU.
func (d *driver) openNCCL(r Ranks) (collective, error) {
	return openNCCL(r, d.enter)
}
