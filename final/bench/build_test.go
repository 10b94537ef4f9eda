package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildGoal is issue 13's goal for a rebuild where every step is cached.
const buildGoal = 100 * time.Millisecond

// buildSteps are the five instructions after FROM. The last one copies
// input.txt, which the "last-copy-changed" line rewrites before each
// build; the RUN is in the middle, so that it stays cached there.
const buildSteps = `ENV BENCH=1
WORKDIR /work
RUN echo built > /work/base.txt
CMD ["cat", "/work/input.txt"]
COPY input.txt /work/input.txt
`

// runAfterCopySteps end with a RUN that reads the file the COPY before
// it brings: changing input.txt makes both steps run again, the RUN in a
// container.
const runAfterCopySteps = `ENV BENCH=1
WORKDIR /work
CMD ["cat", "/work/output.txt"]
COPY input.txt /work/input.txt
RUN cat /work/input.txt > /work/output.txt
`

// BenchmarkBuild times `minibox build -t NAME CONTEXT` of a Dockerfile of
// FROM (the fixture's busybox image) and five steps, as a user types it:
//
//	cached                 nothing changed: every step from the cache
//	last-copy-changed      input.txt changed: the last step (a COPY) runs
//	copy-changed-then-run  input.txt changed: a COPY and the RUN after it
//	                       (the last step) run
//
// Each line checks the build's own report of what came from the cache,
// so that it times the case it names.
func BenchmarkBuild(b *testing.B) {
	f, dir := newMiniboxFixture(b)
	lastCopy := buildContext(b, filepath.Join(dir, "ctx-last-copy"), f.image, buildSteps)
	runAfterCopy := buildContext(b, filepath.Join(dir, "ctx-run-after-copy"), f.image, runAfterCopySteps)
	// The first builds fill the cache (and the busybox image is there).
	f.build(b, lastCopy, "bench-build", -1)
	f.build(b, runAfterCopy, "bench-build-run", -1)

	b.Run("cached", func(b *testing.B) {
		d := median(f.timeBuilds(b, lastCopy, "bench-build", 5, func(int) {}))
		b.ReportMetric(ms(d), "ms-median")
		reportGoal(b, "no-change rebuild", d, buildGoal)
	})
	b.Run("last-copy-changed", func(b *testing.B) {
		d := median(f.timeBuilds(b, lastCopy, "bench-build", 4, func(i int) {
			writeInput(b, lastCopy, i)
		}))
		b.ReportMetric(ms(d), "ms-median")
	})
	b.Run("copy-changed-then-run", func(b *testing.B) {
		d := median(f.timeBuilds(b, runAfterCopy, "bench-build-run", 3, func(i int) {
			writeInput(b, runAfterCopy, i)
		}))
		b.ReportMetric(ms(d), "ms-median")
	})
}

// buildContext writes a build context in dir: a Dockerfile of FROM image
// and steps, and input.txt.
func buildContext(b *testing.B, dir, image, steps string) string {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+image+"\n"+steps), 0o644); err != nil {
		b.Fatal(err)
	}
	writeInput(b, dir, -1)
	return dir
}

// writeInput gives the context's input.txt content of its own for
// iteration i (a build of the same bytes would come from the cache). The
// benchmark's runs with b.N = 1 and then b.N = 20 reuse the numbers, so
// the time is mixed in.
func writeInput(b *testing.B, dir string, i int) {
	b.Helper()
	content := fmt.Sprintf("input %d %d\n", i, time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(dir, "input.txt"), []byte(content), 0o644); err != nil {
		b.Fatal(err)
	}
}

// timeBuilds builds ctx as name b.N times, calling prepare(i) untimed
// before each, and returns the durations. Each build must report exactly
// cachedSteps steps from the cache.
func (f *fixture) timeBuilds(b *testing.B, ctx, name string, cachedSteps int, prepare func(i int)) []time.Duration {
	b.Helper()
	durations := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		prepare(i)
		durations = append(durations, f.build(b, ctx, name, cachedSteps))
	}
	return durations
}

// build runs `minibox build -t name ctx` and returns how long it took. With
// cachedSteps >= 0 the build must have taken that many steps from the
// cache: otherwise the line would time something else than it says.
func (f *fixture) build(b *testing.B, ctx, name string, cachedSteps int) time.Duration {
	b.Helper()
	cmd := f.mb("build", "-t", name, ctx)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("minibox build: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), " ---> Using cache\n"); cachedSteps >= 0 && got != cachedSteps {
		b.Fatalf("minibox build: %d steps from the cache, expected %d:\n%s", got, cachedSteps, out)
	}
	return d
}

// reportGoal says whether a median met a time goal. It never fails b:
// the goals are measured, not asserted (these machines are noisy).
func reportGoal(b *testing.B, what string, got, goal time.Duration) {
	verdict := "met"
	if got > goal {
		verdict = "NOT met"
	}
	b.Logf("goal: %s ≤ %v: %s (median %.1f ms of %d)", what, goal, verdict, ms(got), b.N)
}
