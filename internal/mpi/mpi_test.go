//go:build mpi && cgo

package mpi

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// mpirun is the command line that starts n copies of a program under
// mpirun: as root (CI) with the flag OpenMPI requires there, and
// oversubscribed (2 cores may host more ranks than slots).
func mpirun(n int) []string {
	args := []string{"mpirun", "--oversubscribe", "-np", strconv.Itoa(n)}
	if os.Getuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	return args
}

// TestCollectives runs itself under mpirun -np 3 and checks every
// collective's result on every rank.
func TestCollectives(t *testing.T) {
	if n, _ := Launched(); n == 0 {
		if _, err := exec.LookPath("mpirun"); err != nil {
			t.Fatalf("mpirun is missing (make mpi-deps installs OpenMPI): %v", err)
		}
		args := append(mpirun(3), os.Args[0], "-test.run", "^TestCollectives$", "-test.count=1")
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if got := strings.Count(string(out), "collectives ok"); got != 3 {
			t.Fatalf("%d ranks passed, want 3:\n%s", got, out)
		}
		return
	}
	c, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	r, n := c.Rank(), c.Size()
	if n != 3 || r < 0 || r >= n {
		t.Fatalf("rank %d of %d", r, n)
	}
	x := []float32{float32(r), 1, float32(10 * r)}
	if err := c.AllReduceSum(x); err != nil {
		t.Fatal(err)
	}
	if x[0] != 3 || x[1] != 3 || x[2] != 30 {
		t.Fatalf("rank %d: all-reduce gave %v", r, x)
	}
	recv := make([]int64, 2*n)
	if err := c.AllGather([]int64{int64(r), -int64(r)}, recv); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if recv[2*i] != int64(i) || recv[2*i+1] != -int64(i) {
			t.Fatalf("rank %d: all-gather gave %v", r, recv)
		}
	}
	if err := c.AllGather([]int64{1}, make([]int64, 1)); err == nil {
		t.Fatal("an all-gather into too short a buffer passed")
	}
	b := []int64{int64(r), 7}
	if err := c.Bcast(b, 2); err != nil {
		t.Fatal(err)
	}
	if b[0] != 2 || b[1] != 7 {
		t.Fatalf("rank %d: broadcast gave %v", r, b)
	}
	if err := c.Barrier(); err != nil {
		t.Fatal(err)
	}
	if c2, _ := Init(); c2 != c {
		t.Fatal("a second Init made another Comm")
	}
	os.Stdout.WriteString("collectives ok\n")
}
