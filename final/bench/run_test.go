package bench

import (
	"testing"
	"time"
)

// runGoal is issue 12's goal: podman's time over minibox's.
const runGoal = 10.0

// idleBefore is how long the machine rests before each timed command.
const idleBefore = time.Second

// idle waits until the engines' processes are gone, then idleBefore.
func idle(b *testing.B, base map[int]bool) {
	settle(b, base)
	time.Sleep(idleBefore)
}

// BenchmarkRun times `run --rm IMAGE true`, start to exit, with no network
// and with the bridge (made in the benchmarks' own network namespace):
// minibox and podman in turns, one command each per iteration, so that
// whatever else slows the machine down during the run slows both alike.
// Each command starts on an idle machine, as one a user types does: once
// the processes that outlive the previous command are gone (settle:
// podman's conmon, minibox's supervisor), and a second after that (idle). That costs minibox more than podman: started back to back, a
// minibox command is ~1/3 faster here than after a second of idleness
// (the VM's CPUs go to sleep and each hand-over between processes waits
// for one to wake up: docs/benchmarks.md). Each line gives both medians
// and x-minibox, podman's over minibox's.
func BenchmarkRun(b *testing.B) {
	f := newFixture(b)
	for _, network := range []string{"none", "bridge"} {
		b.Run(network, func(b *testing.B) {
			var minibox, podman, podmanAfter []time.Duration
			base := children()
			for i := 0; i < b.N; i++ {
				idle(b, base)
				minibox = append(minibox, timeOne(b, f.mb("run", "--rm", "--network", network, f.image, "true")))
				settle(b, base)
				if f.podman != nil {
					idle(b, base)
					podman = append(podman, timeOne(b, f.podman.Run("--rm", "--network", network, f.image, "true")))
					podmanAfter = append(podmanAfter, settle(b, base))
				}
			}
			b.ReportMetric(ms(median(minibox)), "ms-minibox")
			if f.podman == nil {
				b.Log(f.noPodman)
				return
			}
			ratio := ms(median(podman)) / ms(median(minibox))
			b.ReportMetric(ms(median(podman)), "ms-podman")
			b.ReportMetric(ratio, "x-minibox")
			verdict := "met"
			if ratio < runGoal {
				verdict = "NOT met"
			}
			b.Logf("after podman run had exited, its processes (conmon) went on for %.1f ms more (median; not counted)", ms(median(podmanAfter)))
			b.Logf("goal: run --rm --network %s at least %.0f× faster than podman: %s (%.1f×: %.1f against %.1f ms, medians of %d in turns)",
				network, runGoal, verdict, ratio, ms(median(minibox)), ms(median(podman)), b.N)
		})
	}
}
