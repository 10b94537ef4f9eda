package lessons_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/minibox-lab/minibox/internal/lesson"
	"github.com/minibox-lab/minibox/internal/mutate"
	"github.com/minibox-lab/minibox/internal/stages"
	"github.com/minibox-lab/minibox/internal/testenv"
	"github.com/minibox-lab/minibox/lessons"
)

// Lessons proven by breaking them (issue 7 §6, docs/mutations.md): each
// mutation removes from a copy of the source tree the mechanism one lesson
// teaches, and that lesson's --check must then fail. A lesson whose
// expectations a broken stage still meets shows nothing.
//
// The languages share demos and expectations (TestLanguagesMatch), so each
// mutation runs its lesson in one language, alternating: mutationLang.
var lessonMutations = []mutate.Mutation{
	// Lesson 1: chroot.
	{
		Name: "01-no-chdir", Lesson: 1, File: "01-chroot/main.go",
		Old: `must(unix.Chdir("/"), "cd /")`,
		New: `narrate("cd /") // mutation: no chdir("/") after chroot`,
		Why: `chroot without chdir("/"): the command still stands in the host's tree (ls ../.. lists the host's /)`,
	},
	{
		Name: "01-no-chroot", Lesson: 1, File: "01-chroot/main.go",
		Old: `must(unix.Chroot(rootfs), "chroot %s", rootfs)`,
		New: `narrate("chroot %s", rootfs) // mutation: no chroot(2)`,
		Why: "no chroot(2) at all: the command sees the host's whole tree as /",
	},
	{
		Name: "01-escape-does-not-climb", Lesson: 1, File: "01-chroot/escape.go",
		Old: `for i := 0; i < 256; i++ {`,
		New: `for i := 0; i < 0; i++ { // mutation: no cd .. past the old root`,
		Why: "the escape without its climb up with cd ..: it stays inside, so the chroot's weakness is not shown",
	},

	// Lesson 2: namespaces.
	{
		Name: "02-no-uts-namespace", Lesson: 2, File: "02-namespaces/main.go",
		Old: `Cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWPID |`,
		New: `Cloneflags: unix.CLONE_NEWPID |`,
		Why: "CLONE_NEWUTS deleted, lesson 2's exercise: the guard refuses to start, so every demo of stage02 fails",
	},
	{
		Name: "02-chroot-not-pivot-root", Lesson: 2, File: "02-namespaces/rootfs.go",
		Old: "must(unix.PivotRoot(\".\", \".\"), \"pivot_root . .\")\n" +
			"\t// Detach the old root, the host's whole tree, from the namespace.\n" +
			"\tmust(unix.Unmount(\".\", unix.MNT_DETACH), \"umount -l .\")",
		New: "must(unix.Chroot(\".\"), \"pivot_root . .\") // mutation: chroot, the host's tree stays mounted\n" +
			"\tnarrate(\"umount -l .\")",
		Why: "chroot instead of pivot_root: the host's tree stays in the mount namespace and stage 01's escape reaches it",
	},
	{
		Name: "02-mounts-not-private", Lesson: 2, File: "02-namespaces/rootfs.go",
		Old: `must(unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""), "mount --make-rprivate /")`,
		New: `narrate("mount --make-rprivate /") // mutation: the mounts stay shared`,
		Why: "no mount --make-rprivate /: where / is shared (systemd), the container's mounts propagate to the host, and pivot_root refuses",
	},
	{
		Name: "02-no-new-proc", Lesson: 2, File: "02-namespaces/rootfs.go",
		Old: `mountProc(filepath.Join(rootfs, "proc"))`,
		New: `narrate("mount -t proc -o nosuid,nodev,noexec proc %s", filepath.Join(rootfs, "proc")) // mutation: no /proc of its own`,
		Why: "no new /proc: ps inside cannot list the PID namespace's processes",
	},
	{
		Name: "02-signal-not-forwarded", Lesson: 2, File: "02-namespaces/signals.go",
		Old: `_ = p.Kill()`,
		New: `_ = p // mutation: the container is not killed`,
		Why: "Ctrl-C or SIGTERM to the stage no longer kills the container: PID 1 ignores them, and lives on",
	},
	{
		Name: "02-no-user-namespace", Lesson: 2, File: "02-namespaces/main.go",
		Old: `addUserNamespace(cmd) // userns.go`,
		New: `_ = addUserNamespace // mutation: --userns makes no user namespace`,
		Why: "--userns makes no user namespace: root inside would be the host's root (the guard refuses: it was asked for one)",
	},
	{
		Name: "02-userns-root-is-host-root", Lesson: 2, File: "02-namespaces/userns.go",
		Old: `{{ContainerID: 0, HostID: userNSHostID, Size: userNSSize}}`,
		New: `{{ContainerID: 0, HostID: 0, Size: userNSSize}} // mutation: root inside is host uid 0`,
		Why: "a user namespace whose root maps to host uid 0: files made inside belong to the host's root",
	},

	// Lesson 3: cgroups.
	{
		Name: "03-no-memory-limit", Lesson: 3, File: "03-cgroups/cgroups.go",
		Old: `if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		New: `if strings.HasPrefix(file, "memory.") { // mutation: memory limits narrated, never written
	} else if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		Why: "--memory never written (memory.max / memory.limit_in_bytes): nothing is OOM-killed",
	},
	{
		Name: "03-no-cpu-quota", Lesson: 3, File: "03-cgroups/cgroups.go",
		Old: `if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		New: `if strings.HasPrefix(file, "cpu.") { // mutation: the CPU quota narrated, never written
	} else if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		Why: "--cpus never written (cpu.max / cpu.cfs_quota_us): the limited loop gets a whole CPU",
	},
	{
		Name: "03-no-pids-limit", Lesson: 3, File: "03-cgroups/cgroups.go",
		Old: `if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		New: `if strings.HasPrefix(file, "pids.") { // mutation: pids.max narrated, never written
	} else if err := os.WriteFile(path, []byte(value), 0); err != nil {`,
		Why: "--pids-limit never written to pids.max: the fork loop is not stopped",
	},
	{
		Name: "03-joins-no-cgroup", Lesson: 3, File: "03-cgroups/cgroups.go",
		Old: `_, err = unix.Write(fd, []byte("0"))`,
		New: `_ = fd // mutation: the child never writes cgroup.procs`,
		Why: "the group is made and limited, but the command never joins it: no limit applies",
	},
	{
		Name: "03-joins-first-cgroup-only", Lesson: 3, File: "03-cgroups/cgroups.go",
		Old: "if err == nil {\n\t\t\t_, err = unix.Write(fd, []byte(\"0\"))",
		New: "if err == nil && fd == 3 { // mutation: only the first group is joined\n\t\t\t_, err = unix.Write(fd, []byte(\"0\"))",
		Why: "only the first cgroup.procs is written: on cgroup v1 the container is in the memory tree only, so --cpus and --pids-limit do nothing",
	},

	// Lesson 4: layers.
	{
		Name: "04-no-overlay", Lesson: 4, File: "04-layers/layers.go",
		Old: `must(unix.MoveMount(fd, "", unix.AT_FDCWD, merged, unix.MOVE_MOUNT_F_EMPTY_PATH), "mount --move OVERLAY %s   # move_mount(2)", merged)`,
		New: `must(unix.Mount(filepath.Join(filepath.Dir(merged), "lower", "0"), merged, "", unix.MS_BIND, ""), "mount --move OVERLAY %s   # move_mount(2)", merged) // mutation: the bottom layer itself, writable, instead of the overlay`,
		Why: "no overlay: the container's root is the bottom layer itself, so its writes land in ROOTFS, where the next container finds them",
	},
	{
		Name: "04-upper-as-lower", Lesson: 4, File: "04-layers/layers.go",
		Old: `err = unix.FsconfigSetString(fs, opts[i][0], opts[i][1])`,
		New: `if i == 0 { // mutation: upper is one more read-only lower; no upperdir, no workdir
			err = unix.FsconfigSetString(fs, "lowerdir", "../upper:"+opts[0][1])
		}`,
		Why: "the container's upper mounted as a read-only lower layer: every write inside fails, nothing is copied up",
	},
	{
		Name: "04-layers-reversed", Lesson: 4, File: "04-layers/layers.go",
		Old: `err = unix.FsconfigSetString(fs, opts[i][0], opts[i][1])`,
		New: `v := opts[i][1]
		if i == 0 { // mutation: lowerdir bottom first, so the lowest layer wins
			v = ""
			for _, l := range lower {
				v = l + ":" + v
			}
			v = strings.TrimSuffix(v, ":")
		}
		err = unix.FsconfigSetString(fs, opts[i][0], v)`,
		Why: "the layers handed to overlayfs in reverse order (lowerdir bottom first): a lower layer's file hides the upper one's",
	},
	{
		Name: "04-unpack-ignores-whiteouts", Lesson: 4, File: "04-layers/unpack.go",
		Old: `return unix.Mknodat(dir, hidden, unix.S_IFCHR, 0)`,
		New: `return nil // mutation: .wh.NAME skipped, NAME of the layers below stays visible`,
		Why: "unpacking skips .wh. entries (no 0/0 device): a file deleted in a committed layer comes back when the layer is stacked",
	},
	{
		Name: "04-unpack-ignores-opaque", Lesson: 4, File: "04-layers/unpack.go",
		Old: `return unix.Fsetxattr(dir, "trusted.overlay.opaque", []byte("y"), 0)`,
		New: `return nil // mutation: .wh..wh..opq skipped, the directory stays transparent`,
		Why: "unpacking skips .wh..wh..opq (no trusted.overlay.opaque): a directory deleted and made again shows the old contents below it",
	},
	{
		Name: "04-commit-drops-whiteouts", Lesson: 4, File: "04-layers/commit.go",
		Old: `return writeHeader(tw, &tar.Header{Name: filepath.Join(filepath.Dir(name), ".wh."+info.Name()), Mode: 0o644, ModTime: info.ModTime()})`,
		New: `return nil // mutation: the whiteout is left out of the layer tar`,
		Why: "commit leaves overlay's whiteouts out of the tar: the committed layer forgets the deletions",
	},
	{
		Name: "04-commit-drops-opaque", Lesson: 4, File: "04-layers/commit.go",
		Old: `return writeHeader(tw, &tar.Header{Name: filepath.Join(name, ".wh..wh..opq"), Mode: 0o644, ModTime: info.ModTime()})`,
		New: `return nil // mutation: opaque directories are not marked in the layer tar`,
		Why: "commit writes no .wh..wh..opq for an opaque directory: the committed layer lets the old contents through",
	},
	{
		Name: "04-unpack-allows-dotdot", Lesson: 4, File: "04-layers/unpack.go",
		Old: `case clean == ".." || strings.HasPrefix(clean, "../"):`,
		New: `case false: // mutation: names may climb out of the layer with ..`,
		Why: "cleanName lets ../ through: an entry ../../x is written outside the layer (the demo aims it into $WORK)",
	},
	{
		Name: "04-unpack-follows-symlinks", Lesson: 4, File: "04-layers/unpack.go",
		Old: `const flags = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_RDONLY | unix.O_CLOEXEC`,
		New: `const flags = unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC // mutation: symlinks followed`,
		Why: "openBeneath follows symlinks: a symlink d -> DIR then an entry d/evil writes into DIR (the demo aims it into $WORK)",
	},

	// Lesson 5: network.
	{
		Name: "05-random-address", Lesson: 5, File: "05-network/ipam.go",
		Old: `for n := first + 2; n < first+(1<<(bits-ones))-1; n++ {`,
		New: `for n := first + 2 + uint32(os.Getpid()%200); n < first+(1<<(bits-ones))-1; n++ { // mutation: a random pick`,
		Why: "the IPAM picks an address at random (from the PID) instead of the lowest free one: the first container is not 10.89.0.2",
	},
	{
		Name: "05-no-default-route", Lesson: 5, File: "05-network/network.go",
		Old: `err = inside.RouteAdd(&netlink.Route{LinkIndex: end.Attrs().Index, Gw: n.gateway()})`,
		New: `_ = end // mutation: no default route via the bridge`,
		Why: "no default route in the container: nothing beyond its own subnet is reachable",
	},
	{
		Name: "05-child-does-not-wait", Lesson: 5, File: "05-network/main.go",
		Old: `waitForNetwork()`,
		New: `// mutation: the child does not wait on the init pipe`,
		Why: "the child goes on without waiting on the init pipe: its command may run before eth0 exists",
	},
	{
		Name: "05-veth-stays-on-host", Lesson: 5, File: "05-network/network.go",
		Old: `err = netlink.LinkSetNsPid(end, pid)`,
		New: `_ = end // mutation: the peer stays in the host's namespace`,
		Why: "the veth peer is never moved into the container's network namespace: no eth0 inside",
	},
	{
		Name: "05-no-masquerade", Lesson: 5, File: "05-network/nat.go",
		Old: `err = iptables(r.args("-I")...)`,
		New: `if r.chain == "POSTROUTING" && r.spec[1] != "127.0.0.0/8" { // mutation: the subnet's MASQUERADE narrated, never added
				narrate("iptables %s", strings.Join(r.args("-I"), " "))
			} else {
				err = iptables(r.args("-I")...)
			}`,
		Why: "no MASQUERADE for the subnet: the outside sees 10.89.0.x, has no route back, and never answers",
	},
	{
		Name: "05-dnat-prerouting-only", Lesson: 5, File: "05-network/nat.go",
		Old: `return []rule{tagged("nat", "PREROUTING", id, spec...), tagged("nat", "OUTPUT", id, spec...)}`,
		New: `return []rule{tagged("nat", "PREROUTING", id, spec...)} // mutation: no OUTPUT rule`,
		Why: "DNAT in PREROUTING only: a connection from the host itself (bridge address, 127.0.0.1) to a published port finds nothing",
	},
	{
		Name: "05-no-forward-rules", Lesson: 5, File: "05-network/nat.go",
		Old: `err = iptables(r.args("-I")...)`,
		New: `if r.chain == "FORWARD" { // mutation: the FORWARD rules narrated, never added
				narrate("iptables %s", strings.Join(r.args("-I"), " "))
			} else {
				err = iptables(r.args("-I")...)
			}`,
		Why: "no FORWARD accept rules for the bridge: where the FORWARD policy is DROP, nothing gets in or out",
	},
	{
		Name: "05-no-route-localnet", Lesson: 5, File: "05-network/nat.go",
		Old: `err = sysctl("net/ipv4/conf/"+bridge+"/route_localnet", "1")`,
		New: `narrate("sysctl -w net.ipv4.conf.%s.route_localnet=1", bridge) // mutation: never set`,
		Why: "route_localnet not set on the bridge: a published port does not answer on 127.0.0.1",
	},
	{
		Name: "05-lease-not-released", Lesson: 5, File: "05-network/network.go",
		Old: `*leases = append((*leases)[:i], (*leases)[i+1:]...)`,
		New: `_ = i // mutation: the lease stays in the file`,
		Why: "the lease is never released at exit: the address stays taken until a later start notices its stage is gone",
	},

	// Lesson 6: images.
	{
		Name: "06-no-digest-check", Lesson: 6, File: "06-images/store.go",
		Old: `case want != "" && got != want:`,
		New: `case false: // mutation: a blob is stored whatever its digest`,
		Why: "putBlob never compares a blob's sha256 with the digest asked for: a tampered layer is taken, under the name of its own hash",
	},
	{
		Name: "06-no-accept-header", Lesson: 6, File: "06-images/registry.go",
		Old: `req.Header.Set("Accept", strings.Join(accept, ", "))`,
		New: `_ = accept // mutation: the Accept header is narrated, never sent`,
		Why: "the manifest request lists no media types: the registry answers 404 to an OCI manifest",
	},
	{
		Name: "06-build-cache-never-hit", Lesson: 6, File: "06-images/build.go",
		Old: `if b.fromCache(key) {`,
		New: `if false && b.fromCache(key) { // mutation: every step runs again`,
		Why: "the build cache is never consulted: an unchanged rebuild runs every step again",
	},
	{
		Name: "06-image-config-ignored", Lesson: 6, File: "06-images/image.go",
		Old: `p.Env = append(append([]string{}, cfg.Env...), p.Env...)`,
		New: `return // mutation: the image's Env, WorkingDir and User are ignored
	p.Env = append(append([]string{}, cfg.Env...), p.Env...)`,
		Why: "process.fromImage does nothing: a container of the image lacks its Env and starts in / instead of its WorkingDir",
	},
	{
		Name: "06-commit-drops-layer", Lesson: 6, File: "06-images/commit.go",
		Old: `img.manifest.Layers = append(img.manifest.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: layer, Size: size})`,
		New: `_ = size // mutation: the container's layer is stored, but not added to the image`,
		Why: "commit ID NAME makes an image without the container's layer: the committed image lacks the container's changes",
	},
	{
		Name: "06-image-cmd-ignored", Lesson: 6, File: "06-images/image.go",
		Old: `ep, cmd := cfg.Entrypoint, cfg.Cmd`,
		New: `ep, cmd := cfg.Entrypoint, []string(nil) // mutation: the image's Cmd is ignored`,
		Why: "imageCommand ignores the config's Cmd: run IMAGE without a command has nothing to run",
	},

	// Lesson 7: the engine (final/engine, final/runtime). The demos run
	// minibox itself, so these mutate minibox: see runLessonInCopy's
	// caller, which builds it from the mutated copy.
	{
		Name: "07-exit-status-lost", Lesson: 7, File: "final/engine/keeper/streams.go",
		Old: `return ws.ExitStatus()`,
		New: `return 0 // mutation: every container exits 0`,
		Why: "the supervisor records 0 whatever PID 1 returned: run exits 0 and ps -a shows Exited (0) for sh's exit 3",
	},
	{
		Name: "07-supervisor-writes-no-log", Lesson: 7, File: "final/engine/keeper/streams.go",
		Old: `s.Log.Write(stream, buf[:n])`,
		New: `_ = stream // mutation: the output goes to attached clients only, never into container.log`,
		Why: "the supervisor does not write container.log: logs of a detached or exited container show nothing",
	},
	{
		Name: "07-rm-keeps-container", Lesson: 7, File: "final/engine/supervise.go",
		Old: `if s.c.Config.AutoRemove {`,
		New: `if false && s.c.Config.AutoRemove { // mutation: --rm is recorded, never done`,
		Why: "the supervisor ignores --rm: a run --rm container stays in ps -a after it exits",
	},
	{
		Name: "07-exec-keeps-host-mounts", Lesson: 7, File: "final/runtime/exec.go",
		Old: `var execNamespaces = []string{"ipc", "uts", "net", "pid", "mnt", "cgroup"}`,
		New: `var execNamespaces = []string{"ipc", "uts", "net", "pid", "cgroup"} // mutation: no setns into the mount namespace`,
		Why: "exec joins every namespace but the mount namespace: the command sees the host's files and /proc, not the container's",
	},
	{
		Name: "07-pid1-is-a-shell", Lesson: 7, File: "final/engine/bundle.go",
		Old: `p.Args, p.Cwd, p.Terminal = c.Config.Cmd, c.Config.WorkingDir, c.Config.Tty`,
		New: `p.Args, p.Cwd, p.Terminal = append([]string{"/bin/sh", "-c", "\"$@\" & wait $!", "sh"}, c.Config.Cmd...), c.Config.WorkingDir, c.Config.Tty // mutation: a shell is PID 1, the command its child`,
		Why: "the bundle wraps the command in a shell: PID 1 is sh, the user's command its child (exec … ps shows it, and stop's SIGTERM is a shell's to ignore)",
	},

	// Lesson 7's build, ship, run: final/build, final/image's push,
	// final/engine's commit (and podman reads what they made).
	{
		Name: "07-build-cache-never-hit", Lesson: 7, File: "final/build/stage.go",
		Old: `if !bd.o.NoCache {`,
		New: `if false && !bd.o.NoCache { // mutation: the cache is written, never read`,
		Why: "build never looks in its cache: an unchanged rebuild runs every step again (no Using cache) and makes another image id",
	},
	{
		Name: "07-build-drops-cmd", Lesson: 7, File: "final/build/stage.go",
		Old: `return meta(fmt.Sprintf("CMD %q", cmd), func(s *stage) { s.cfg.Config.Cmd, s.cmdSet = cmd, true })`,
		New: `return meta(fmt.Sprintf("CMD %q", cmd), func(s *stage) { s.cmdSet = true }) // mutation: CMD stays out of the image's config`,
		Why: "build drops CMD from the image's config: the built image runs its base's Cmd, here and in podman, not the Dockerfile's",
	},
	{
		Name: "07-push-skips-nothing", Lesson: 7, File: "final/image/push.go",
		Old: `resp, err := c.call(ctx, http.MethodHead, blobURL, nil, nil, "blob "+j.desc.Digest.String())`,
		New: `_ = blobURL // mutation: no HEAD, the registry is never asked what it has
	resp, err := (*http.Response)(nil), fmt.Errorf("%w: not asked", ErrRemoteNotFound)`,
		Why: "push never asks the registry (HEAD) which blobs it has: a second push of the same image sends its layers again",
	},
	{
		Name: "07-commit-adds-no-layer", Lesson: 7, File: "final/engine/commit.go",
		Old: "cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, layer.DiffID)\n" +
			"\timage.AddHistory(&cfg, ocispec.History{Created: &now, CreatedBy: strings.Join(c.Config.Cmd, \" \"), Author: o.Author, Comment: o.Message})\n" +
			"\tlayers := append(append([]ocispec.Descriptor(nil), img.Manifest.Layers...), layer.Desc)",
		New: "_ = layer // mutation: the container's layer is stored, but the image does not get it\n" +
			"\timage.AddHistory(&cfg, ocispec.History{Created: &now, CreatedBy: strings.Join(c.Config.Cmd, \" \"), Author: o.Author, Comment: o.Message, EmptyLayer: true})\n" +
			"\tlayers := append([]ocispec.Descriptor(nil), img.Manifest.Layers...)",
		Why: "commit makes an image of the container's image alone, without its layer: the committed image lacks the container's changes, in minibox and in podman",
	},
	{
		Name: "07-push-no-manifest", Lesson: 7, File: "final/image/push.go",
		Old: `c.base+"/v2/"+c.repository+"/manifests/"+r.Tag, bytesBody(manifest),`,
		New: `c.base+"/v2/"+c.repository+"/manifests/"+desc.Digest.String(), bytesBody(manifest), // mutation: the manifest goes up by digest, the tag never`,
		Why: "push uploads the manifest by digest, never under its tag: the registry has the blobs but no app:2, and machine 2 cannot pull it",
	},
	{
		Name: "07-no-keeper", Lesson: 7, File: "final/engine/supervise.go",
		Old: `if !waitAttach && !keeper.ExitsWithin(pid, keeperAfter) {`,
		New: `if false && !keeper.ExitsWithin(pid, keeperAfter) { // mutation: the supervisor never hands over`,
		Why: "a detached container's supervisor stays as it was: no keeper takes over (and its setup's heap stays)",
	},
	{
		Name: "07-keeper-is-the-shim", Lesson: 7, File: "final/engine/keep.go",
		Old: `if f, err := runtime.OpenCompanion(keeper.Name); err == nil {`,
		New: `if f, _ := runtime.OpenCompanion(keeper.Name); false { // mutation: the supervisor's own binary keeps`,
		Why: "the keeper is minibox-shim again, with the engine's package inits in it: its program is not minibox-keeper",
	},
}

// mutationLang is the language mutation i runs its lesson in: the
// mutations of one lesson take the languages in turn, so a lesson with as
// many mutations as there are languages is checked in every language.
func mutationLang(ms []mutate.Mutation, i int) string {
	k := 0
	for _, m := range ms[:i] {
		if m.Lesson == ms[i].Lesson {
			k++
		}
	}
	return lesson.Langs[k%len(lesson.Langs)]
}

// Every lesson is broken by at least one mutation in every language.
func TestMutationsCoverEveryLessonInEveryLanguage(t *testing.T) {
	covered := map[string]bool{}
	names := map[string]bool{}
	for i, m := range lessonMutations {
		covered[fmt.Sprintf("%d/%s", m.Lesson, mutationLang(lessonMutations, i))] = true
		assert.False(t, names[m.Name], "two mutations named %s", m.Name)
		names[m.Name] = true
		assert.NotEmpty(t, m.Why, "%s: say which mechanism it removes", m.Name)
	}
	for _, lang := range lesson.Langs {
		all, err := lesson.Load(lessons.FS, lang)
		require.NoError(t, err)
		for _, l := range all {
			assert.True(t, covered[fmt.Sprintf("%d/%s", l.Number, lang)],
				"no mutation checks lesson %d (%s) in %s: add one to lessonMutations", l.Number, l.Name, lang)
		}
	}
}

// Every mutation still applies to the working tree: exactly one match of
// its text. Pure and fast, so a stage edit that makes a mutation stale
// fails here first, not only in the root-only check.
func TestMutationsApplyToTheTree(t *testing.T) {
	src, err := filepath.Abs("..")
	require.NoError(t, err)
	for _, m := range lessonMutations {
		t.Run(m.Name, func(t *testing.T) {
			require.NoError(t, mutate.Tree(src, t.TempDir(), m))
		})
	}
}

// docs/mutations.md lists every mutation by name.
func TestMutationsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/mutations.md")
	require.NoError(t, err)
	for _, m := range lessonMutations {
		assert.Contains(t, string(doc), "`"+m.Name+"`", "docs/mutations.md does not list mutation %s", m.Name)
	}
}

// failedOnADemo matches the lesson runner's reports of a demo that ran and
// did not do what the lesson says: an unmet expectation, a wrong exit
// status, or a hang. A build error or a lesson that could not start proves
// nothing about the lesson, and matches none of these.
var failedOnADemo = regexp.MustCompile(`expectation ".*" not met|demo exited with status \d+|demo did not finish within`)

func TestLessonsFailWhenTheirMechanismIsRemoved(t *testing.T) {
	testenv.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	testenv.Require(t, err == nil, "needs unshare(1) from util-linux")
	src, err := filepath.Abs("..")
	require.NoError(t, err)
	tmp := searchableTempDir(t)
	// One minibox, built from the real tree: `minibox lesson` builds the
	// stages from the tree MINIBOX_SRC names, here each mutated copy.
	minibox := buildMinibox(t, tmp)
	host, err := os.Hostname()
	require.NoError(t, err)
	start, ran := time.Now(), 0

	// The control: unmutated, every lesson passes in the wrapper, so a
	// mutated run that fails fails because of its mutation.
	all, err := lesson.Load(lessons.FS, "en")
	require.NoError(t, err)
	failsUnmutated := map[int]bool{}
	for _, l := range all {
		t.Run("unmutated/"+l.Name, func(t *testing.T) {
			ran++
			failsUnmutated[l.Number] = true // until it passes
			testenv.CheckLeaks(t)
			dir := filepath.Join(tmp, "unmutated-"+l.Name)
			require.NoError(t, mutate.Copy(src, filepath.Join(dir, "src")))
			out, code, took := runLessonInCopy(t, unshare, minibox, dir, l.Number, "en")
			require.Equal(t, 0, code, "lesson %d --check fails unmutated in the wrapper (took %s): the mutation check would prove nothing\n%s",
				l.Number, took, tail(out, 40))
			failsUnmutated[l.Number] = false
			t.Logf("lesson %d unmutated: passed in %s", l.Number, took)
		})
	}

	for i, m := range lessonMutations {
		lang := mutationLang(lessonMutations, i)
		t.Run(fmt.Sprintf("%s/%s", m.Name, lang), func(t *testing.T) {
			ran++
			require.False(t, failsUnmutated[m.Lesson], "lesson %d fails unmutated: its failure with %s would prove nothing", m.Lesson, m.Name)
			testenv.CheckLeaks(t)
			// The wrapper keeps a broken stage off the host's hostname;
			// check anyway, and put it back.
			t.Cleanup(func() {
				if now, _ := os.Hostname(); now != host {
					t.Errorf("the host's hostname changed from %q to %q; restored", host, now)
					_ = unix.Sethostname([]byte(host))
				}
			})
			dir := filepath.Join(tmp, m.Name)
			require.NoError(t, mutate.Tree(src, filepath.Join(dir, "src"), m))
			bin := minibox
			if mutatesMinibox(m) {
				bin = buildMiniboxFrom(t, filepath.Join(dir, "src"), dir)
			}

			out, code, took := runLessonInCopy(t, unshare, bin, dir, m.Lesson, lang)
			require.NotEqual(t, 0, code,
				"lesson %d --check --lang %s passed with mutation %s (%s): it does not check what it teaches (took %s)\n%s",
				m.Lesson, lang, m.Name, m.Why, took, tail(out, 40))
			require.NotContains(t, out, "cannot run yet", "the lesson did not start: this proves nothing\n%s", tail(out, 20))
			require.NotRegexp(t, `build \S+ failed`, out, "the mutated stage does not compile: fix the mutation\n%s", tail(out, 20))
			require.Regexp(t, failedOnADemo, out, "lesson %d failed, but not on a demo's expectation or status:\n%s", m.Lesson, tail(out, 30))
			t.Logf("%s: lesson %d (%s) failed, in %s: %s", m.Name, m.Lesson, lang, took, firstFailure(out))
		})
	}
	t.Logf("%d lesson runs (of %d lessons unmutated and %d mutations) in %s",
		ran, len(all), len(lessonMutations), time.Since(start).Round(100*time.Millisecond))
}

// mutatesMinibox reports whether m changes minibox itself (the engine,
// the runtime, the commands) rather than a stage: lesson 7's demos run
// the minibox on PATH, which is the binary that runs the lesson, so the
// mutated copy's minibox must run it.
func mutatesMinibox(m mutate.Mutation) bool {
	return strings.HasPrefix(m.File, "final/") || strings.HasPrefix(m.File, "internal/cli/")
}

// buildMiniboxFrom builds minibox from the source tree src into dir,
// with its companions (minibox-lessons runs the lesson, minibox-shim the
// containers), all of the mutated tree.
func buildMiniboxFrom(t *testing.T, src, dir string) string {
	t.Helper()
	goTool, err := stages.GoTool()
	require.NoError(t, err)
	bin, err := testenv.BuildMiniboxFrom(goTool, src, dir)
	require.NoError(t, err, "build the mutated minibox")
	return bin
}

// lessonWrapper runs minibox in a throw-away mount and UTS namespace whose
// mounts are all shared, as on a systemd host. Shared only after it was
// made a private copy (`unshare --propagation private`): its peer groups
// are its own, so nothing a broken stage mounts reaches the host, and a
// stage whose guard failed could rename or pivot_root only this namespace.
const lessonWrapper = `mount --make-rshared / || exit 125
exec "$@"`

// runLessonInCopy runs `minibox lesson N --yes --check --lang L` in the
// wrapper, with the stages built from dir/src and a fresh rootfs in dir (a
// mutation cannot spoil the next one's), and returns its output, exit
// status and duration.
func runLessonInCopy(t *testing.T, unshare, minibox, dir string, n int, lang string) (string, int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--uts", "--mount", "--propagation", "private", "--",
		"sh", "-c", lessonWrapper, "sh", minibox, "lesson", fmt.Sprint(n), "--yes", "--check", "--lang", lang)
	cmd.Dir = filepath.Join(dir, "src")
	cmd.Env = append(os.Environ(),
		"MINIBOX_SRC="+filepath.Join(dir, "src"),
		"MINIBOX_ROOTFS="+filepath.Join(dir, "rootfs"),
		"MINIBOX_STATE="+filepath.Join(dir, "progress.json"),
	)
	// SIGTERM on a timeout: minibox then stops the demo and cleans up.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began).Round(100 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("minibox lesson %d --check did not end within 5 minutes:\n%s", n, tail(string(out), 40))
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run minibox lesson %d: %v", n, err)
	}
	return string(out), cmd.ProcessState.ExitCode(), took
}

// firstFailure is the runner's first failure line, for the test log.
func firstFailure(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if failedOnADemo.MatchString(line) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
