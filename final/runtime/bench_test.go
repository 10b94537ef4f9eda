package runtime_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/final/runtime"
	"github.com/minibox-lab/minibox/internal/rootfs"
	"github.com/minibox-lab/minibox/internal/testenv"
)

// BenchmarkRuntimeRun compares `minibox runtime run`, `runc run` and
// `crun run` on one bundle (/bin/true), start to exit, each as a command
// as a user would run it. `make bench` prints them side by side; compare
// the ratios, not the absolute times (these machines are noisy).
func BenchmarkRuntimeRun(b *testing.B) {
	testenv.RequireRoot(b)
	dir := b.TempDir()
	busybox, err := rootfs.FindStaticBusybox()
	if err != nil {
		b.Fatal(err)
	}
	if err := rootfs.Build(filepath.Join(dir, "rootfs"), busybox); err != nil {
		b.Fatal(err)
	}
	minibox, err := testenv.BuildMinibox("", dir) // with minibox-shim, the init's binary
	if err != nil {
		b.Fatal(err)
	}
	s := testSpec("/bin/true")
	s.Root.Path = filepath.Join(dir, "rootfs")
	s.Linux.CgroupsPath = "/minibox/bench"
	sharedRootfs = s.Root.Path // writeBundle's callers expect it set
	bundle := writeBundle(b, s)
	// The library alone, in this process (no CLI start-up): what the
	// engine pays.
	b.Run("library", func(b *testing.B) {
		r := &runtime.Runtime{Root: b.TempDir()}
		for i := 0; i < b.N; i++ {
			id := "lib" + strconv.Itoa(i)
			pid, err := r.Create(id, bundle, runtime.IO{}, "", "")
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Start(id); err != nil {
				b.Fatal(err)
			}
			var ws unix.WaitStatus
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
				b.Fatal(err)
			}
			if err := r.Delete(id, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, rt := range []struct{ name, bin string }{{"minibox", minibox}, {"runc", "runc"}, {"crun", "crun"}} {
		b.Run(rt.name, func(b *testing.B) {
			path, err := exec.LookPath(rt.bin)
			if err != nil {
				b.Skipf("%s is not installed", rt.bin)
			}
			args := []string{"--root", b.TempDir()}
			if rt.name == "minibox" {
				args = append([]string{"runtime"}, args...)
			}
			// One try first: crun refuses hybrid cgroup hosts, for one.
			if out, err := exec.Command(path, append(args, "run", "--bundle", bundle, "try")...).CombinedOutput(); err != nil {
				b.Skipf("%s run fails here: %v: %s", rt.name, err, out)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(path, append(args, "run", "--bundle", bundle, "b"+strconv.Itoa(i))...)
				cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
				if err := cmd.Run(); err != nil {
					b.Fatalf("%s run: %v", rt.name, err)
				}
			}
		})
	}
}
