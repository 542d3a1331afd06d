package train

import "syscall"

// peakRSS is the process's peak resident set size in bytes (0 when the
// system does not say).
func peakRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024 // KiB on Linux
}
