package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minibox-lab/minibox/final/engine/keeper"
	"github.com/minibox-lab/minibox/internal/podmantest"
)

// hundred is how many detached containers a round starts.
const hundred = 100

// detached is what BenchmarkHundredDetached needs of an engine.
type detached struct {
	start func() *exec.Cmd // run -d … sleep: prints the container's id
	// supervisors are the containers' supervisor PIDs (conmon's for podman).
	supervisors func(ids []string) ([]int, error)
	remove      func(ids []string) *exec.Cmd // rm -f, no waiting
	dirs        []string                     // where the engine keeps images and containers
}

// rounds are the measurements of each round, per container.
type rounds struct {
	start                           []time.Duration // all 100
	supervisor, processes, disk, im []float64       // KiB
}

// BenchmarkHundredDetached starts 100 `run -d --network none IMAGE sleep`
// containers one after another (the timed part), then with all of them
// running measures their memory and disk, and removes them.
func BenchmarkHundredDetached(b *testing.B) {
	f := newFixture(b)
	var mb rounds
	b.Run("minibox", func(b *testing.B) {
		mb = f.benchDetached(b, f.miniboxDetached())
	})
	b.Run("podman", func(b *testing.B) {
		p := f.podmanOrSkip(b)
		pd := f.benchDetached(b, podmanDetached(p, f.image))
		reportRatio(b, "x-minibox", ms(median(pd.start)), ms(median(mb.start)))
		reportRatio(b, "x-minibox-mem", medianOf(pd.supervisor)+medianOf(pd.processes), medianOf(mb.supervisor)+medianOf(mb.processes))
		reportRatio(b, "x-minibox-supervisor", medianOf(pd.supervisor), medianOf(mb.supervisor))
		reportRatio(b, "x-minibox-disk", medianOf(pd.disk), medianOf(mb.disk))
	})
}

// benchDetached runs b.N rounds of hundred containers and reports the
// medians of the rounds.
func (f *fixture) benchDetached(b *testing.B, e detached) rounds {
	var r rounds
	for i := 0; i < b.N; i++ {
		f.detachedRound(b, e, &r)
	}
	b.ReportMetric(median(r.start).Seconds(), "s-start-100")
	b.ReportMetric(medianOf(r.supervisor), "KiB-supervisor")
	b.ReportMetric(medianOf(r.processes), "KiB-processes")
	b.ReportMetric(medianOf(r.supervisor)+medianOf(r.processes), "KiB-total")
	b.ReportMetric(medianOf(r.disk), "KiB-disk")
	b.ReportMetric(medianOf(r.im), "KiB-image")
	return r
}

// detachedRound starts hundred containers (timed), measures them and
// removes them (not timed).
func (f *fixture) detachedRound(b *testing.B, e detached, r *rounds) {
	b.StopTimer()
	empty, err := diskUsage(e.dirs...)
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	ids := make([]string, 0, hundred)
	for i := 0; i < hundred; i++ {
		ids = append(ids, strings.TrimSpace(run(b, e.start())))
	}
	r.start = append(r.start, time.Since(start))
	b.StopTimer()
	defer b.StartTimer()
	supervisors, err := e.supervisors(ids)
	if err != nil {
		b.Fatal(err)
	}
	sup, procs, err := memoryPerContainer(supervisors)
	if err != nil {
		b.Fatal(err)
	}
	full, err := diskUsage(e.dirs...)
	if err != nil {
		b.Fatal(err)
	}
	r.supervisor, r.processes = append(r.supervisor, sup), append(r.processes, procs)
	r.disk = append(r.disk, float64(full-empty)/1024/hundred)
	r.im = append(r.im, float64(empty)/1024)
	run(b, e.remove(ids))
}

// miniboxDetached is minibox's side: its data root, `ps --format json`
// for the supervisors.
func (f *fixture) miniboxDetached() detached {
	return detached{
		start: func() *exec.Cmd {
			return f.mb("run", "-d", "--network", "none", f.image, "sleep", "3600")
		},
		supervisors: func(ids []string) ([]int, error) {
			out, err := f.mb("ps", "--format", "json").Output()
			if err != nil {
				return nil, fmt.Errorf("minibox ps: %w", err)
			}
			var list []struct {
				ID    string `json:"Id"`
				State struct{ SupervisorPid int }
			}
			if err := json.Unmarshal(out, &list); err != nil {
				return nil, fmt.Errorf("minibox ps --format json: %w", err)
			}
			byID := map[string]int{}
			for _, c := range list {
				byID[c.ID] = c.State.SupervisorPid
			}
			pids, err := pidsOf(ids, func(id string) int { return byID[id] })
			if err != nil {
				return nil, err
			}
			return pids, keptByTheKeeper(pids)
		},
		remove: func(ids []string) *exec.Cmd { return f.mb(append([]string{"rm", "-f"}, ids...)...) },
		dirs:   []string{f.root},
	}
}

// podmanDetached is podman's side: its root and runroot, inspect for conmon.
func podmanDetached(p *podmantest.Podman, image string) detached {
	return detached{
		start: func() *exec.Cmd {
			return p.Run("-d", "--network", "none", image, "sleep", "3600")
		},
		supervisors: func(ids []string) ([]int, error) {
			out, err := p.Cmd(append([]string{"inspect", "--format", "{{.Id}} {{.State.ConmonPid}}"}, ids...)...).Output()
			if err != nil {
				return nil, fmt.Errorf("podman inspect: %w", err)
			}
			byID := map[string]int{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				var id string
				var pid int
				if _, err := fmt.Sscan(line, &id, &pid); err == nil {
					byID[id] = pid
				}
			}
			return pidsOf(ids, func(id string) int { return byID[id] })
		},
		remove: func(ids []string) *exec.Cmd {
			return p.Cmd(append([]string{"rm", "-f", "-t", "0"}, ids...)...)
		},
		dirs: p.Dirs(),
	}
}

// keptByTheKeeper waits until every supervisor has become its
// container's keeper, minibox-keeper (final/engine/keep.go: 100 ms after
// its container started), as after make build: measuring minibox-shim,
// or the big minibox binary, would measure their package inits' heap.
func keptByTheKeeper(pids []int) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil {
				return err
			}
			if filepath.Base(exe) == keeper.Name {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("supervisor %d runs %s, not %s: minibox did not find its keeper", pid, exe, keeper.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// pidsOf looks up each id's PID; an id without one (not running) is an
// error: the measurement would be short of a container.
func pidsOf(ids []string, lookup func(string) int) ([]int, error) {
	pids := make([]int, 0, len(ids))
	for _, id := range ids {
		pid := lookup(id)
		if pid <= 0 {
			return nil, fmt.Errorf("container %s: no supervisor PID (not running?)", id)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
