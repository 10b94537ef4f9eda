package doctor

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/minibox-lab/minibox/internal/cleanup"
	"github.com/minibox-lab/minibox/internal/stages"
)

// MinKernel is the oldest kernel the lessons are written for: 4.18 has all
// six namespaces, overlayfs and the cgroup v2 memory, cpu and pids
// controllers.
var MinKernel = [2]int{4, 18}

// Checks are the host checks, in the order the lessons need them.
func Checks() []Check {
	return []Check{
		{"root", checkRoot},
		{"kernel", checkKernel},
		{"namespaces", checkNamespaces},
		{"cgroups", checkCgroups},
		{"cgroup join", checkCgroupJoin},
		{"overlayfs", checkOverlay},
		{"mount API", checkMountAPI},
		{"data root", checkDataRoot},
		{"mount propagation", checkPropagation},
		{"ip forwarding", checkIPForward},
		{"iptables", checkIptables},
		{"iproute2", checkCommand("ip", "apt-get install iproute2 (Debian/Ubuntu) or dnf install iproute (Fedora)", "bridges, veth pairs")},
		{"image tools", checkImageTools},
		{"engine tools", checkEngineTools},
		{"go toolchain", checkGo},
		{"static busybox", checkBusybox},
		{"demo rootfs", checkRootfs},
		{"rootfs access", checkRootfsAccess},
		{"container", checkContainer},
		{"leftovers", checkLeftovers},
	}
}

func checkRoot(h Host) Result {
	if h.Euid() == 0 {
		return Result{Status: OK, Detail: "running as root"}
	}
	return Result{Status: Fail, Detail: fmt.Sprintf("running as uid %d; namespaces, mounts and cgroups need root", h.Euid()),
		Fix: "run it with sudo: sudo minibox doctor (and sudo minibox lesson N)"}
}

func checkKernel(h Host) Result {
	rel := h.KernelRelease()
	major, minor, ok := parseKernel(rel)
	if !ok {
		return Result{Status: Warn, Detail: fmt.Sprintf("cannot read the kernel version from %q", rel)}
	}
	if major > MinKernel[0] || major == MinKernel[0] && minor >= MinKernel[1] {
		return Result{Status: OK, Detail: "Linux " + rel}
	}
	return Result{Status: Fail, Detail: fmt.Sprintf("Linux %s is older than %d.%d", rel, MinKernel[0], MinKernel[1]),
		Fix: "use a newer distribution (Debian 11+, Ubuntu 20.04+) or upgrade the kernel"}
}

// FdJoinKernel is the first kernel with the fix for CVE-2021-4197: a
// write to cgroup.procs is checked against the credentials of whoever
// opened the file, not of the writer. Stage 03's parent opens the group's
// cgroup.procs and the child joins through it from inside the container;
// with --userns on cgroup v2 the writer is host uid 100000, which an older
// kernel refuses. Stable kernels got the fix as backports, which the
// version alone cannot tell.
var FdJoinKernel = [2]int{5, 16}

func checkCgroupJoin(h Host) Result {
	if m, err := hostCgroups(h); err == nil && m.Mode != "v2" {
		return Result{Status: OK, Detail: "cgroup v1 checks the joining process, not the file: no kernel fix needed"}
	}
	rel := h.KernelRelease()
	major, minor, ok := parseKernel(rel)
	if ok && (major > FdJoinKernel[0] || major == FdJoinKernel[0] && minor >= FdJoinKernel[1]) {
		return Result{Status: OK, Detail: fmt.Sprintf("Linux %s has the CVE-2021-4197 fix (%d.%d): with --userns a container joins its v2 group through its parent's fd", rel, FdJoinKernel[0], FdJoinKernel[1])}
	}
	return Result{Status: Warn,
		Detail: fmt.Sprintf("cannot tell whether Linux %s has the CVE-2021-4197 fix (in %d.%d, backported to some stable kernels): without it stage 03 --userns with limits fails joining its cgroup (permission denied)", rel, FdJoinKernel[0], FdJoinKernel[1]),
		Fix:    fmt.Sprintf("if it fails: run stage 03 without --userns, or use Linux %d.%d or newer (every lesson demo runs without it)", FdJoinKernel[0], FdJoinKernel[1])}
}

// parseKernel reads "6.1.0-18-cloud-amd64" as 6, 1.
func parseKernel(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

var namespaceFlags = []struct {
	name   string
	flag   uintptr
	config string
}{
	{"mnt", syscall.CLONE_NEWNS, ""},
	{"uts", syscall.CLONE_NEWUTS, "CONFIG_UTS_NS"},
	{"ipc", syscall.CLONE_NEWIPC, "CONFIG_IPC_NS"},
	{"pid", syscall.CLONE_NEWPID, "CONFIG_PID_NS"},
	{"net", syscall.CLONE_NEWNET, "CONFIG_NET_NS"},
	{"user", syscall.CLONE_NEWUSER, "CONFIG_USER_NS"},
}

func checkNamespaces(h Host) Result {
	if h.Euid() != 0 {
		return Result{Status: Warn, Detail: "not checked: creating namespaces needs root", Fix: "run as root to check"}
	}
	var ok, failed []string
	var fixes []string
	for _, ns := range namespaceFlags {
		if err := h.TryNamespace(ns.flag); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", ns.name, err))
			if ns.name == "user" {
				fixes = append(fixes, "user namespaces may be disabled: sysctl -w user.max_user_namespaces=15000 (and on Ubuntu 23.10+: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)")
			} else if ns.config != "" {
				fixes = append(fixes, "the kernel lacks "+ns.config+": use a distribution kernel")
			}
			continue
		}
		ok = append(ok, ns.name)
	}
	if len(failed) > 0 {
		return Result{Status: Fail, Detail: "cannot create: " + strings.Join(failed, ", "), Fix: strings.Join(fixes, "\n")}
	}
	return Result{Status: OK, Detail: "all six can be created: " + strings.Join(ok, " ")}
}

func checkOverlay(h Host) Result {
	fs, err := h.ReadFile("/proc/filesystems")
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	if HasFilesystem(fs, "overlay") {
		return Result{Status: OK, Detail: "overlay is in /proc/filesystems"}
	}
	// Not loaded yet is fine when the module is there: the kernel loads it
	// on the first overlay mount.
	if h.Exists("/lib/modules/" + h.KernelRelease() + "/kernel/fs/overlayfs") {
		return Result{Status: OK, Detail: "overlay module available (loads on the first overlay mount)"}
	}
	return Result{Status: Fail, Detail: "overlay is not in /proc/filesystems (lesson 4 needs it)",
		Fix: "modprobe overlay  (and add overlay to /etc/modules-load.d/minibox.conf to keep it)"}
}

// MountAPIKernel is the first kernel with the new mount API (fsopen(2),
// fsconfig(2), fsmount(2), move_mount(2)), with which stage 04 makes its
// overlay detached and hands it to the container.
var MountAPIKernel = [2]int{5, 2}

// checkMountAPI tries what stage 04 does first: fsopen("overlay"). It
// creates a file system context and closes it, mounting nothing, so it
// tells both whether the kernel has the new mount API and whether it
// has overlayfs (loading the module if needed), and whether something (a
// container's seccomp filter) forbids it.
func checkMountAPI(h Host) Result {
	if h.Euid() != 0 {
		return Result{Status: Warn, Detail: "not checked: fsopen(2) needs root", Fix: "run as root to check"}
	}
	err := h.TryFsopen("overlay")
	newer := fmt.Sprintf("Linux %d.%d", MountAPIKernel[0], MountAPIKernel[1])
	switch {
	case err == nil:
		return Result{Status: OK, Detail: `fsopen("overlay") works: the new mount API (` + newer + `+) that stage 04 makes its overlay with`}
	case errors.Is(err, syscall.ENOSYS):
		return Result{Status: Fail,
			Detail: fmt.Sprintf("no fsopen(2) (%v): Linux %s is older than %s, or a seccomp filter hides it (inside a container?); lesson 4 needs it", err, h.KernelRelease(), newer),
			Fix:    "use " + newer + " or newer (Debian 11+, Ubuntu 20.04+), on a VM or a real machine"}
	case errors.Is(err, syscall.EPERM):
		return Result{Status: Fail,
			Detail: fmt.Sprintf("fsopen(2) refused (%v) although root: a seccomp filter or a missing CAP_SYS_ADMIN (inside a container?); lesson 4 needs it", err),
			Fix:    "run the lessons on a VM or a real machine (a container would need --privileged)"}
	case errors.Is(err, syscall.ENODEV):
		return Result{Status: Fail, Detail: fmt.Sprintf("fsopen(\"overlay\"): %v: the kernel has no overlay file system (lesson 4 needs it)", err),
			Fix: "modprobe overlay  (and add overlay to /etc/modules-load.d/minibox.conf to keep it)"}
	}
	return Result{Status: Fail, Detail: fmt.Sprintf("fsopen(\"overlay\"): %v (lesson 4 needs it)", err),
		Fix: "run the lessons on a VM or a real machine with " + newer + " or newer"}
}

// checkDataRoot checks that overlayfs can keep containers' upper layers
// in the data root: not on overlayfs itself (overlay refuses an overlay
// as upper, EINVAL: the data root is on one inside a container), nor on
// NFS (no whiteouts, no trusted.* xattrs).
func checkDataRoot(h Host) Result {
	dir, fstype, err := h.DataRootFS()
	if err != nil {
		return Result{Status: Warn, Detail: "cannot tell what file system " + dir + " is on: " + err.Error()}
	}
	moveIt := "keep the data root on another file system: MINIBOX_ROOT=DIR (or --root DIR), e.g. a volume mounted into the container, or run on a VM"
	switch fstype {
	case "overlay":
		return Result{Status: Fail,
			Detail: "data root " + dir + " is on overlayfs (minibox inside a container?): overlay refuses an upper layer there (EINVAL; the kernel log says: filesystem on … not supported as upperdir), so lesson 4's containers cannot start",
			Fix:    moveIt}
	case "nfs":
		return Result{Status: Fail,
			Detail: "data root " + dir + " is on NFS: overlay refuses an upper layer there (no trusted.* attributes for its whiteouts), so lesson 4's containers cannot start",
			Fix:    moveIt}
	}
	return Result{Status: OK, Detail: "data root " + dir + " is on " + fstype + ": overlay can keep containers' upper layers there"}
}

// HasFilesystem reports whether /proc/filesystems content lists fstype.
func HasFilesystem(procFilesystems, fstype string) bool {
	for _, line := range strings.Split(procFilesystems, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

func checkPropagation(h Host) Result {
	mi, err := h.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Result{Status: Warn, Detail: err.Error()}
	}
	switch p := RootPropagation(mi); p {
	case "shared":
		return Result{Status: OK, Detail: "/ is shared (the systemd default): that is why every stage from 02 first makes its mounts private"}
	case "":
		return Result{Status: Warn, Detail: "no / mount found in /proc/self/mountinfo"}
	default:
		return Result{Status: OK, Detail: "/ is " + p + " (stages still make their mounts private: most hosts share /)"}
	}
}

// RootPropagation reads the propagation of "/" from mountinfo (proc(5)):
// optional fields "shared:N" or "master:N" before the " - " separator;
// none means private.
func RootPropagation(mountinfo string) string {
	prop := ""
	// The last "/" wins: a mount on top of / hides the ones below it.
	for _, m := range cleanup.ParseMountinfo(mountinfo) {
		if m.Point != "/" {
			continue
		}
		prop = "private"
		for _, opt := range m.Optional {
			switch {
			case strings.HasPrefix(opt, "shared:"):
				prop = "shared"
			case strings.HasPrefix(opt, "master:") && prop != "shared":
				prop = "slave"
			case opt == "unbindable":
				prop = "unbindable"
			}
		}
	}
	return prop
}

func checkIPForward(h Host) Result {
	v, err := h.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return Result{Status: Warn, Detail: err.Error()}
	}
	if strings.TrimSpace(v) == "1" {
		return Result{Status: OK, Detail: "net.ipv4.ip_forward = 1"}
	}
	return Result{Status: Warn, Detail: "net.ipv4.ip_forward = 0: containers on a bridge cannot reach beyond the host (lesson 5 turns it on only inside its own network namespace)",
		Fix: "sysctl -w net.ipv4.ip_forward=1"}
}

// lesson5Needs is the verdict when something lesson 5 needs is missing:
// lesson 5 cannot run without it.
const lesson5Needs = Fail

// checkCommand checks for a command that lesson 5 needs.
func checkCommand(cmd, install, what string) func(Host) Result {
	return func(h Host) Result {
		if p, err := h.LookPath(cmd); err == nil {
			return Result{Status: OK, Detail: p}
		}
		return Result{Status: lesson5Needs, Detail: cmd + " not found: lesson 5 needs it (" + what + ")", Fix: install}
	}
}

const (
	iptablesInstall = "apt-get install iptables (Debian/Ubuntu) or dnf install iptables-nft (Fedora)"
	// iptablesModules is the fix when iptables is there but cannot reach
	// the kernel's tables: the backend it uses lacks its modules.
	iptablesModules = "the kernel lacks the backend's modules: with nf_tables, modprobe nf_tables (or use the legacy backend: update-alternatives --set iptables /usr/sbin/iptables-legacy); with legacy, modprobe iptable_nat"
	// legacyPresent is what iptables-nft says when the legacy backend holds
	// tables too.
	legacyPresent = "iptables-legacy tables present"
)

// checkIptables checks what stage 05 does with iptables: the command is
// there and can read the nat table in this network namespace (lesson 5
// runs its own, but with the same command and kernel). It names the
// backend: iptables(8) is either iptables-nft, which writes nf_tables
// rules, or iptables-legacy, the older x_tables interface; both are
// evaluated by the kernel, so a rule in one cannot override a DROP in the
// other (docker's FORWARD policy, say, when docker uses the other).
func checkIptables(h Host) Result {
	path, err := h.LookPath("iptables")
	if err != nil {
		return checkCommand("iptables", iptablesInstall, "NAT, published ports")(h)
	}
	backend := iptablesBackend(h, path)
	if h.Euid() != 0 {
		return Result{Status: Warn, Detail: path + " (" + backend + "); not checked: reading the nat table needs root", Fix: "run as root to check"}
	}
	out, err := h.Output(path, "-t", "nat", "-S")
	if err != nil {
		return Result{Status: lesson5Needs,
			Detail: fmt.Sprintf("%s -t nat -S fails in this network namespace (%v: %s): stage 05 cannot make its NAT rules", path, err, firstLine(out)),
			Fix:    iptablesInstall + "\ninstalled but failing: " + iptablesModules}
	}
	if strings.Contains(out, legacyPresent) {
		return Result{Status: Warn,
			Detail: fmt.Sprintf("%s (%s) works, but the legacy backend holds rules too: its DROP (docker's FORWARD policy, if docker uses it) still drops what minibox's rules accept", path, backend),
			Fix:    "see them with iptables-legacy-save; use one backend for both: update-alternatives --set iptables /usr/sbin/iptables-legacy"}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s (%s): the nat table can be read in this network namespace", path, backend)}
}

// imageTools are the commands lesson 6 runs besides the stage: a local
// registry to pull from (docker-registry), umoci and skopeo, which make
// an image from the demo rootfs and push it there, and curl, which asks the
// registry's API. Debian and Ubuntu package each under the command's name.
var imageTools = []string{"docker-registry", "skopeo", "umoci", "curl"}

// checkImageTools checks that every command lesson 6 runs is on PATH.
func checkImageTools(h Host) Result {
	found, missing := lookPaths(h, imageTools)
	if len(missing) == 0 {
		return Result{Status: OK, Detail: strings.Join(found, ", ")}
	}
	them := "them"
	if len(missing) == 1 {
		them = "it"
	}
	return Result{Status: Fail,
		Detail: strings.Join(missing, ", ") + " not found: lesson 6 needs " + them + " (a local registry to pull from, and an image put in it with umoci and skopeo)",
		Fix:    imageToolsFix(missing)}
}

// engineTools are the other engines lesson 7 compares minibox with: runc
// runs the bundle minibox's engine made, podman runs the image minibox
// built. Debian, Ubuntu and Fedora package each under its name.
var engineTools = []string{"runc", "podman"}

// checkEngineTools checks that every engine lesson 7 runs is on PATH.
func checkEngineTools(h Host) Result {
	found, missing := lookPaths(h, engineTools)
	if len(missing) == 0 {
		return Result{Status: OK, Detail: strings.Join(found, ", ")}
	}
	return Result{Status: Fail,
		Detail: strings.Join(missing, ", ") + " not found: lesson 7 runs the engine's bundle on runc and the image minibox built on podman",
		Fix: "apt-get install " + strings.Join(missing, " ") + " (Debian/Ubuntu), or sudo scripts/install-prereqs.sh, which installs every package the lessons need" +
			"\nFedora: dnf install " + strings.Join(missing, " ")}
}

// lookPaths looks each command up on PATH: the paths of those found, the
// names of those missing.
func lookPaths(h Host, cmds []string) (found, missing []string) {
	for _, cmd := range cmds {
		if p, err := h.LookPath(cmd); err == nil {
			found = append(found, p)
		} else {
			missing = append(missing, cmd)
		}
	}
	return found, missing
}

// imageToolsFix says how to install the missing image tools: the Debian
// packages, or scripts/install-prereqs.sh, which installs every package
// the lessons need; Fedora's names on a second line.
func imageToolsFix(missing []string) string {
	fix := "apt-get install " + strings.Join(missing, " ") + " (Debian/Ubuntu; on Ubuntu from universe), or sudo scripts/install-prereqs.sh, which installs every package the lessons need"
	fedora := make([]string, len(missing))
	link := ""
	for i, cmd := range missing {
		fedora[i] = cmd
		if cmd == "docker-registry" {
			// Fedora's package installs the registry as "registry".
			fedora[i] = "docker-distribution"
			link = ", then ln -s /usr/bin/registry /usr/local/bin/docker-registry"
		}
	}
	return fix + "\nFedora: dnf install " + strings.Join(fedora, " ") + link
}

// iptablesBackend names the backend iptables --version reports
// ("iptables v1.8.9 (nf_tables)"): "nf_tables backend", "legacy backend".
func iptablesBackend(h Host, path string) string {
	out, _ := h.Output(path, "--version")
	if _, rest, ok := strings.Cut(out, "("); ok {
		if name, _, ok := strings.Cut(rest, ")"); ok {
			return name + " backend"
		}
	}
	return "backend unknown"
}

// firstLine is the first non-empty line of s, trimmed.
func firstLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return "no output"
}

func checkGo(h Host) Result {
	for _, p := range []string{"go", "/usr/local/go/bin/go"} {
		path, err := h.LookPath(p)
		if err != nil {
			continue
		}
		version, err := h.GoVersion(path)
		if err != nil {
			return Result{Status: Fail, Detail: path + " does not run: " + err.Error(), Fix: "reinstall Go: https://go.dev/doc/install"}
		}
		if !goAtLeast(version, stages.MinGo) {
			return Result{Status: Fail, Detail: fmt.Sprintf("%s is %s; minibox needs Go %s or newer", path, version, stages.MinGo),
				Fix: "install a newer Go from https://go.dev/doc/install (distribution packages are often older)"}
		}
		return Result{Status: OK, Detail: path + " " + version + " (lessons build the stage programs from your working tree)"}
	}
	return Result{Status: Fail, Detail: "no go command: the lessons build the stage programs from your working tree",
		Fix: "install Go " + stages.MinGo + " or newer from https://go.dev/doc/install"}
}

// leadingNumber reads the digits at the start of s: "23rc1" → 23.
func leadingNumber(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// goAtLeast compares "go1.22.5" (or "go1.23rc1") with "1.21".
func goAtLeast(version, min string) bool {
	have, want := strings.Split(strings.TrimPrefix(version, "go"), "."), strings.Split(min, ".")
	for i := 0; i < 2; i++ {
		h, w := 0, 0
		if i < len(have) {
			h = leadingNumber(have[i])
		}
		if i < len(want) {
			w, _ = strconv.Atoi(want[i])
		}
		if h != w {
			return h > w
		}
	}
	return true
}

func checkBusybox(h Host) Result {
	p, err := h.StaticBusybox()
	if err != nil {
		return Result{Status: Fail, Detail: err.Error(), Fix: busyboxFix}
	}
	return Result{Status: OK, Detail: p + " is statically linked"}
}

// busyboxFix says how to install a static busybox.
const busyboxFix = "apt-get install busybox-static (Debian/Ubuntu) or dnf install busybox (Fedora)"

// checkRootfs only warns: `minibox lesson N` builds the demo rootfs itself
// on its first run when a static busybox is there, and the static busybox
// check fails when it is not.
func checkRootfs(h Host) Result {
	dir, ok := h.RootfsBuilt()
	if ok {
		return Result{Status: OK, Detail: dir}
	}
	return Result{Status: Warn, Detail: dir + " is not built (the first lesson that needs it builds it)", Fix: "sudo minibox rootfs  (or: make rootfs)"}
}

// checkRootfsAccess checks that every directory from / down to the rootfs
// is searchable by others (o+x): with --userns, container root is host uid
// 100000, an "other" to directories root owns, and must walk the path to
// its root file system. Directories not made yet are skipped: the rootfs
// build makes them 0755.
func checkRootfsAccess(h Host) Result {
	dir, _ := h.RootfsBuilt()
	var closed []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if mode, err := h.Mode(d); err == nil && mode&0o001 == 0 {
			closed = append([]string{d}, closed...)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	if len(closed) == 0 {
		return Result{Status: OK, Detail: "every directory down to " + dir + " is searchable by others (--userns needs it)"}
	}
	return Result{Status: Fail,
		Detail: strings.Join(closed, ", ") + " not searchable by others: with --userns container root (host uid 100000) cannot reach " + dir + " (lesson 2)",
		Fix:    "chmod o+x " + strings.Join(closed, " ") + "  (or keep the rootfs elsewhere: --rootfs DIR or MINIBOX_ROOTFS)"}
}

// checkLeftovers lists what an interrupted lesson or a killed stage left
// (the cleanup registry, removing nothing). Objects minibox leaves on
// purpose (the empty minibox/ cgroup parent) and ones in use by a running
// container are not leftovers.
func checkLeftovers(h Host) Result {
	objs, err := h.Leftovers()
	if err != nil {
		return Result{Status: Warn, Detail: "cannot look for leftovers: " + err.Error(), Fix: "sudo minibox cleanup --dry-run"}
	}
	var left []string
	for _, o := range objs {
		if k, ok := cleanup.KindNamed(o.Kind); (ok && k.Shared) || o.Busy != "" {
			continue
		}
		left = append(left, o.String())
	}
	if len(left) == 0 {
		return Result{Status: OK, Detail: "nothing left by an interrupted lesson or stage"}
	}
	const shown = 3
	detail := fmt.Sprintf("%d left by an interrupted lesson or stage: ", len(left))
	if len(left) > shown {
		detail += strings.Join(left[:shown], ", ") + fmt.Sprintf(", and %d more", len(left)-shown)
	} else {
		detail += strings.Join(left, ", ")
	}
	return Result{Status: Warn, Detail: detail, Fix: "sudo minibox cleanup  (minibox cleanup --dry-run lists them all)"}
}

func checkContainer(h Host) Result {
	var signs []string
	for _, f := range []string{"/.dockerenv", "/run/.containerenv"} {
		if h.Exists(f) {
			signs = append(signs, f)
		}
	}
	if h.RootFstype() == "overlay" {
		return Result{Status: Fail, Detail: "/ is an overlay filesystem (inside a container?): overlay on overlay does not work for lesson 4",
			Fix: "run the lessons on a VM or a real machine, or give the container a volume that is not overlay and set MINIBOX_ROOT and MINIBOX_ROOTFS to it"}
	}
	if len(signs) > 0 {
		return Result{Status: Warn, Detail: "signs of a container (" + strings.Join(signs, ", ") + "), but / is not overlay, so the lessons can run",
			Fix: "if a lesson fails with EPERM, run on a VM instead of inside a container"}
	}
	return Result{Status: OK, Detail: "not inside a container"}
}
