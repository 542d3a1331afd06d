package mpi

import "testing"

func TestLaunched(t *testing.T) {
	for _, v := range sizeVars {
		t.Setenv(v, "")
	}
	if n, v := Launched(); n != 0 || v != "" {
		t.Fatalf("no launcher: %d from %q", n, v)
	}
	t.Setenv("PMI_SIZE", "x")
	if n, _ := Launched(); n != 0 {
		t.Fatalf("PMI_SIZE=x gave %d", n)
	}
	t.Setenv("PMI_SIZE", "4")
	if n, v := Launched(); n != 4 || v != "PMI_SIZE" {
		t.Fatalf("PMI_SIZE=4 gave %d from %q", n, v)
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	if n, v := Launched(); n != 2 || v != "OMPI_COMM_WORLD_SIZE" {
		t.Fatalf("OMPI_COMM_WORLD_SIZE=2 gave %d from %q", n, v)
	}
}
