package mpi

import "testing"

func TestLocalRank(t *testing.T) {
	for _, v := range localVars {
		t.Setenv(v, "")
	}
	if n := LocalRank(); n != 0 {
		t.Fatalf("no launcher: local rank %d", n)
	}
	t.Setenv("SLURM_LOCALID", "-1")
	if n := LocalRank(); n != 0 {
		t.Fatalf("SLURM_LOCALID=-1 gave %d", n)
	}
	t.Setenv("SLURM_LOCALID", "3")
	if n := LocalRank(); n != 3 {
		t.Fatalf("SLURM_LOCALID=3 gave %d", n)
	}
	t.Setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1")
	if n := LocalRank(); n != 1 {
		t.Fatalf("OMPI_COMM_WORLD_LOCAL_RANK=1 gave %d", n)
	}
}
