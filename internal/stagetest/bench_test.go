package stagetest

import (
	"os/exec"
	"testing"
)

// Start-up cost of each stage: one container running busybox `true`,
// start to exit. Compare with the reference timings in
// ../shared/notes/host.md (unshare of 5 namespaces + chroot ≈ 1.3 ms, crun
// run ≈ 4.5 ms, runc run ≈ 13 ms), side by side in one run: these machines
// are noisy. `make bench` runs it.
func BenchmarkStage01RunTrue(b *testing.B) { benchRun(b, "01") }

func BenchmarkStage02RunTrue(b *testing.B) { benchRun(b, "02") }

func BenchmarkStage02RunTrueUserns(b *testing.B) { benchRun(b, "02", "--userns") }

func BenchmarkStage03RunTrueWithLimits(b *testing.B) {
	benchRun(b, "03", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20")
}

func benchRun(b *testing.B, nn string, flags ...string) {
	bin := stageBinary(b, nn)
	args := append(append([]string{"run"}, flags...), rootfsDir, "--", "true")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			b.Fatalf("stage%s %v: %v\n%s", nn, args, err, out)
		}
	}
}
