package bench

import (
	"os/exec"
	"testing"
	"time"
)

// BenchmarkRun times `run --rm IMAGE true`, start to exit, with no network
// and with the bridge (made in the benchmarks' own network namespace),
// minibox's then podman's, side by side: podman's lines carry x-minibox,
// podman's median over minibox's.
func BenchmarkRun(b *testing.B) {
	f := newFixture(b)
	miniboxMedian := map[string]time.Duration{}
	for _, network := range []string{"none", "bridge"} {
		b.Run("minibox-"+network, func(b *testing.B) {
			d := median(timeEach(b, func() *exec.Cmd {
				return f.mb("run", "--rm", "--network", network, f.image, "true")
			}))
			miniboxMedian[network] = d
			b.ReportMetric(ms(d), "ms-median")
		})
		b.Run("podman-"+network, func(b *testing.B) {
			p := f.podmanOrSkip(b)
			d := median(timeEach(b, func() *exec.Cmd {
				return p.Run("--rm", "--network", network, f.image, "true")
			}))
			b.ReportMetric(ms(d), "ms-median")
			reportRatio(b, "x-minibox", ms(d), ms(miniboxMedian[network]))
		})
	}
}
