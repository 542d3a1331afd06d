//go:build cudaemu && !cuda

package cuda

import "fmt"

// openNCCL loads NCCL as the cuda build does, so that a missing library is
// the same error here as on a GPU, then refuses.
func (emu) openNCCL(r Ranks) (collective, error) {
	if _, _, err := loadNCCL(); err != nil {
		return nil, fmt.Errorf("rank %d of %d: %w", r.Rank(), r.Size(), err)
	}
	return nil, fmt.Errorf("rank %d of %d: %w", r.Rank(), r.Size(), ErrEmulated)
}
