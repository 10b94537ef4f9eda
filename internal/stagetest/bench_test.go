package stagetest

import (
	"os/exec"
	"testing"
)

// Start-up cost of each stage: one container running busybox `true`,
// start to exit. Compare with the reference timings in
// ../shared/notes/host.md (unshare of 5 namespaces + chroot ≈ 1.3 ms, crun
// run ≈ 4.5 ms, runc run ≈ 13 ms), side by side in one run: these machines
// are noisy. `make bench` runs it. Like the tests, each benchmark runs on
// the stage that introduced what it measures and on every later one
// (BenchmarkStage01RunTrue/stage03), so a stage that grows slower shows.
func BenchmarkStage01RunTrue(b *testing.B) { benchStages(b, "01") }

func BenchmarkStage02RunTrueUserns(b *testing.B) { benchStages(b, "02", "--userns") }

func BenchmarkStage03RunTrueWithLimits(b *testing.B) {
	benchStages(b, "03", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20")
}

// benchStages runs benchRun with flags on every stage from nn on.
func benchStages(b *testing.B, nn string, flags ...string) {
	for _, s := range stagesFrom(b, nn) {
		b.Run("stage"+s.nn, func(b *testing.B) { benchRun(b, s.nn, flags...) })
	}
}

func benchRun(b *testing.B, nn string, flags ...string) {
	bin := stageBinary(b, nn)
	args := append(append([]string{"run"}, flags...), rootfsDir, "--", "true")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		argv := inThrowawayNetns(b, bin, append([]string{bin}, args...)) // from stage 05 on
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = stageEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("stage%s %v: %v\n%s", nn, args, err, out)
		}
	}
}
