#!/usr/bin/env bash
# Run one Go test package inside a throw-away VM whose kernel has only cgroup v2.
#
#   scripts/cgroupv2-vm/run.sh PKG [TEST-BINARY FLAGS...]
#   scripts/cgroupv2-vm/run.sh ./internal/stagetest -test.run Cgroup -test.v
#
# Why: the machines minibox is developed and tested on are cgroup v1/hybrid and
# must stay so, but most students run pure cgroup v2. So we boot Debian's own
# 6.1 cloud kernel under QEMU with an initramfs that holds a static busybox,
# our /init (init.sh next to this file), a few kernel modules, the statically
# linked test binary, every stage program, the minibox command (and
# minibox-shim) and any host programs named in MINIBOX_VM_TOOLS; /init runs
# the tests as root and reports their exit status, which becomes this script's
# exit status.
# See docs/cgroup-v2-vm.md.
#
# Environment:
#   MINIBOX_VM_TOOLS    host programs to copy in, with their libraries
#                       (space-separated names on PATH, e.g. docker-registry)
#   MINIBOX_VM_CACHE    where the kernel is kept  (/var/cache/minibox/cgroupv2-vm)
#   MINIBOX_VM_TIMEOUT  seconds before the VM is killed                    (600)
#   MINIBOX_VM_MEM      guest memory in MiB                               (1024)
#   GO                  the go command (go on PATH, else /usr/local/go/bin/go)
#
# Needs: go, qemu-system-x86_64 (Debian package qemu-system-x86), a static
# busybox (busybox-static), apt-get and dpkg-deb (to fetch the kernel once).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PKG is a path in the module, like ./internal/v2vmcheck: work from the
# repository root whatever the current directory is.
cd "$here/../.."
cache=${MINIBOX_VM_CACHE:-/var/cache/minibox/cgroupv2-vm}
vm_timeout=${MINIBOX_VM_TIMEOUT:-600}
vm_mem=${MINIBOX_VM_MEM:-1024}
# Kernel modules the tests need that the cloud kernel does not build in.
# Their dependencies (llc, stp for bridge) are found and loaded first.
modules=(overlay veth bridge)

say() { echo "cgroupv2-vm: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}
# no_kernel: the pinned kernel cannot be had here (not Debian 12, or no
# network). CI (MINIBOX_REQUIRE_ROOT=1) must run the VM, so that is an
# error there; on a student's machine the VM step is skipped, saying why.
no_kernel() {
	[[ ${MINIBOX_REQUIRE_ROOT:-} == 1 ]] && die "$*"
	say "skipping the cgroup v2 VM: $* (it needs Debian 12's linux-image-cloud-amd64 6.1 kernel)"
	exit 0
}

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
	echo "usage: $0 PKG [TEST-BINARY FLAGS...]   e.g. $0 ./internal/v2vmcheck -test.v" >&2
	exit 2
fi
pkg=$1
shift
[[ $vm_timeout =~ ^[1-9][0-9]*$ ]] || die "MINIBOX_VM_TIMEOUT must be a number of seconds, not '$vm_timeout'"
[[ $vm_mem =~ ^[1-9][0-9]*$ ]] || die "MINIBOX_VM_MEM must be a number of MiB, not '$vm_mem'"

# --- Tools ------------------------------------------------------------------
# sudo's secure_path usually leaves Go's directory out: look in the default
# install location too, or take $GO.
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $go ]] || command -v "$go" >/dev/null ||
	die "'$go' not found: install Go (https://go.dev/doc/install), or set GO=/path/to/go"
for tool in qemu-system-x86_64 timeout gzip; do
	if ! command -v "$tool" >/dev/null; then
		case $tool in
		qemu-system-x86_64) die "'$tool' not found (Debian package qemu-system-x86)" ;;
		timeout) die "'$tool' not found (Debian package coreutils)" ;;
		gzip) die "'$tool' not found (Debian package gzip)" ;;
		*) die "'$tool' not found" ;;
		esac
	fi
done
# The initramfs has no userland but busybox, so it must be the static build:
# a dynamically linked one would find no C library in the VM.
busybox=/bin/busybox
if [[ ! -x $busybox ]]; then
	die "$busybox not found: install the Debian package busybox-static"
fi
if ldd "$busybox" >/dev/null 2>&1; then # ldd fails on static binaries
	die "$busybox is dynamically linked: install the Debian package busybox-static"
fi

# --- Temporary files, removed on every exit path ------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/minibox-v2vm.XXXXXX")
vm_pid= # the `timeout qemu` process, once started
filter_pid=
watch_pid=
# shellcheck disable=SC2317 # reached through the EXIT trap, which shellcheck does not follow
cleanup() {
	if [[ -n $watch_pid ]]; then
		kill "$watch_pid" 2>/dev/null || true
		wait "$watch_pid" 2>/dev/null || true
	fi
	# Stop the VM if we are leaving early (error, Ctrl-C, kill); timeout(1)
	# passes the signal on to QEMU.
	if [[ -n $vm_pid ]] && kill -0 "$vm_pid" 2>/dev/null; then
		kill -TERM "$vm_pid" 2>/dev/null || true
		wait "$vm_pid" 2>/dev/null || true
	fi
	if [[ -n $filter_pid ]]; then
		wait "$filter_pid" 2>/dev/null || true
	fi
	rm -rf "$work" ${dl:+"$dl"}
}
trap cleanup EXIT
# A signal ends the script (the EXIT trap then cleans up). Because the VM runs
# in the background and we `wait` for it, bash runs these traps at once.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# apt_get ARGS...: apt-get that waits at most 120 s for the dpkg lock (another
# apt or unattended-upgrades may hold it) and 300 s in all. Its output is not
# shown; its stderr is kept in $work/apt.log and printed if it fails.
apt_get() {
	local rc=0
	timeout 300 apt-get -o DPkg::Lock::Timeout=120 "$@" >/dev/null 2>"$work/apt.log" || rc=$?
	if ((rc != 0)); then
		if ((rc == 124)); then
			say "apt-get $* timed out after 300 s:"
		else
			say "apt-get $* failed (exit status $rc):"
		fi
		sed 's/^/  /' "$work/apt.log" >&2
	fi
	return "$rc"
}

# is_debian: /etc/os-release says this is Debian (ID=debian). Only Debian's
# package lists can have the pinned kernel: elsewhere apt-get update is
# pointless (or there is no apt at all).
is_debian() {
	local f id=
	for f in /etc/os-release /usr/lib/os-release; do
		if [[ -r $f ]]; then
			id=$(sed -n 's/^ID=//p' "$f" | tr -d "\"'")
			break
		fi
	done
	[[ $id == debian ]]
}

root=$work/initramfs
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,run,root,minibox/modules,stages,src}

# --- The kernel, fetched once into the cache ------------------------------------
# Pin the distribution's own 6.1 cloud kernel: a 6.12 backports kernel crashes
# under Debian 12's QEMU 7.2. linux-image-cloud-amd64 is a meta package; what
# it depends on is the real image, linux-image-6.1.0-NN-cloud-amd64.
kernel_re='linux-image-6\.1\.0-[0-9]+-cloud-amd64'
resolve_kernel_pkg() {
	local name
	name=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		grep -oE "$kernel_re" | head -n1) || true
	if [[ -z $name ]]; then
		# The candidate may not be a 6.1 kernel (e.g. backports pinned up):
		# take the newest 6.1 one among all known versions.
		name=$(apt-cache show linux-image-cloud-amd64 2>/dev/null |
			grep -oE "$kernel_re" | sort -V | tail -n1) || true
	fi
	echo "$name"
}

# The newest kernel already unpacked in the cache, if any.
cached_kernel_pkg() {
	find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-6.1.0-*-cloud-amd64' \
		-exec test -f '{}/.complete' ';' -printf '%f\n' 2>/dev/null | sort -V | tail -n1 || true
}

# fetch_kernel PKG: download PKG and unpack it into $cache/PKG. Download and
# unpack only: installing it would pull in udev, initramfs-tools and kmod and
# run boot-loader hooks on this machine. Unpacked beside the cache and renamed
# into place, so a concurrent or interrupted run never sees half a kernel.
dl= # the download directory, removed by cleanup if we are interrupted
fetch_kernel() {
	local pkg=$1
	mkdir -p "$cache" && dl=$(mktemp -d "$cache/.download.XXXXXX") || return 1
	# apt-get download drops its privileges to the _apt user, which must be
	# able to write here; without this it works but warns.
	chmod 0755 "$dl"
	chown _apt "$dl" 2>/dev/null || true
	if ! { (cd "$dl" && apt_get download -qq "$pkg") &&
		dpkg-deb -x "$dl/$pkg"_*.deb "$dl/unpacked" &&
		touch "$dl/unpacked/.complete"; }; then
		rm -rf "$dl"
		dl=
		return 1
	fi
	if [[ ! -f $cache/$pkg/.complete ]]; then
		rm -rf "${cache:?}/$pkg"
		# Fails only if a concurrent run was first: then use its copy.
		mv -T "$dl/unpacked" "$cache/$pkg" 2>/dev/null || true
	fi
	rm -rf "$dl"
	dl=
}

# apt-cache takes half a second (no binary package cache on these machines),
# so remember its answer ($cache/resolved) until the package lists change.
lists_id() {
	find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -printf '%f %T@ %s\n' 2>/dev/null |
		sort | md5sum | cut -d' ' -f1
}
remember_kernel_pkg() {
	{ mkdir -p "$cache" && echo "$(lists_id) $1" >"$cache/resolved.$$" &&
		mv "$cache/resolved.$$" "$cache/resolved"; } 2>/dev/null || true
}
kernel_pkg=
if [[ -f $cache/resolved ]]; then
	read -r saved_id saved_pkg <"$cache/resolved" || true
	[[ ${saved_id:-} == "$(lists_id)" ]] && kernel_pkg=${saved_pkg:-}
fi
if [[ -z $kernel_pkg ]]; then
	kernel_pkg=$(resolve_kernel_pkg)
	# No package lists yet (a fresh machine)? A cached kernel will do.
	[[ -n $kernel_pkg ]] || kernel_pkg=$(cached_kernel_pkg)
	if [[ -z $kernel_pkg ]]; then
		is_debian || no_kernel "this is not Debian (/etc/os-release)"
		say "updating apt package lists to find the kernel"
		apt_get update -qq || no_kernel "apt-get update failed"
		kernel_pkg=$(resolve_kernel_pkg)
		if [[ -z $kernel_pkg && -s $work/apt.log ]]; then
			say "apt-get update said:"
			sed 's/^/  /' "$work/apt.log" >&2
		fi
	fi
	[[ -n $kernel_pkg ]] || no_kernel "cannot resolve linux-image-cloud-amd64 to a linux-image-6.1.0-*-cloud-amd64 package"
	remember_kernel_pkg "$kernel_pkg"
fi

if [[ ! -f $cache/$kernel_pkg/.complete ]]; then
	say "downloading kernel $kernel_pkg (once, into $cache)"
	if ! fetch_kernel "$kernel_pkg"; then
		# The lists may be older than the mirror, which then no longer has
		# that version: refresh them once, resolve again and retry.
		kernel_pkg=
		if is_debian; then
			say "download failed; updating apt package lists and retrying"
			apt_get update -qq || true
			kernel_pkg=$(resolve_kernel_pkg)
		fi
		if [[ -z $kernel_pkg ]] || ! fetch_kernel "$kernel_pkg"; then
			kernel_pkg=$(cached_kernel_pkg)
			[[ -n $kernel_pkg ]] || no_kernel "cannot download the kernel (apt-get download linux-image-6.1.0-*-cloud-amd64)"
			say "using the cached kernel $kernel_pkg instead"
		fi
		remember_kernel_pkg "$kernel_pkg"
	fi
fi
kernel_release=${kernel_pkg#linux-image-}
kdir=$cache/$kernel_pkg
vmlinuz=$kdir/boot/vmlinuz-$kernel_release
moddir=$kdir/lib/modules/$kernel_release/kernel
[[ -f $vmlinuz ]] || die "$vmlinuz missing: remove $kdir and run again"

# --- Kernel modules, in dependency order ---------------------------------------
# The package ships no modules.dep (depmod makes it at install time) and kmod
# is not installed, so read each module's dependencies from its .modinfo
# section: NUL-separated key=value strings, one of them "depends=a,b".
declare -A mod_path=() mod_seen=()
while IFS= read -r -d '' f; do
	base=${f##*/}
	base=${base%.xz}
	base=${base%.ko}
	mod_path[${base//-/_}]=$f # module names use _ where file names may use -
done < <(find "$moddir" -type f \( -name '*.ko' -o -name '*.ko.xz' \) -print0)

mod_order=()
add_module() { # add_module NAME: add NAME after the modules it depends on.
	local name=${1//-/_} src ko deps dep
	[[ -n ${mod_seen[$name]:-} ]] && return 0
	mod_seen[$name]=1
	src=${mod_path[$name]:-}
	[[ -n $src ]] || die "kernel module $name not found in $moddir"
	ko=$work/$name.ko
	if [[ $src == *.xz ]]; then # newer Debian kernels compress their modules
		xz -dc "$src" >"$ko"
	else
		cp "$src" "$ko"
	fi
	deps=$(tr '\0' '\n' <"$ko" | grep -a -m1 '^depends=' || true)
	deps=${deps#depends=}
	for dep in ${deps//,/ }; do
		add_module "$dep"
	done
	mod_order+=("$name")
}
for m in "${modules[@]}"; do
	add_module "$m"
done
# /init loads /minibox/modules/*.ko in glob order: number them.
i=0
for m in "${mod_order[@]}"; do
	i=$((i + 1))
	mv "$work/$m.ko" "$(printf '%s/minibox/modules/%02d-%s.ko' "$root" "$i" "$m")"
done

# --- The test binary and the stage programs ------------------------------------
# Static (CGO_ENABLED=0): the VM has no C library. amd64 like the kernel.
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
modroot=$("$go" list -m -f '{{.Dir}}') || die "cannot find the Go module at $PWD"
pkgdir=$("$go" list -f '{{.Dir}}' "$pkg") || die "cannot find package $pkg"
[[ $(wc -l <<<"$pkgdir") -eq 1 ]] || die "give exactly one package, not $pkg"
"$go" test -c -o "$root/minibox/test" "$pkg" || die "cannot build the tests of $pkg"
# A package without test files builds no binary; go test -c says nothing.
[[ -x $root/minibox/test ]] || die "$pkg has no tests"

# Every stage program NN-name becomes /stages/stageNN; tests find them through
# MINIBOX_STAGE_BIN instead of running `go build` (there is no Go in the VM).
stage_pkgs=()
declare -A stage_num=()
for d in "$modroot"/[0-9][0-9]-*/; do
	[[ -d $d ]] || continue
	d=${d%/}
	name=${d##*/}
	# Only directories with a buildable (non-test) Go file are stage programs.
	if ! find "$d" -maxdepth 1 -name '*.go' ! -name '*_test.go' | grep -q .; then
		continue
	fi
	nn=${name:0:2}
	[[ -z ${stage_num[$nn]:-} ]] || die "two stage directories start with $nn: ${stage_num[$nn]} and $name"
	stage_num[$nn]=$name
	stage_pkgs+=("./$name")
done
# The minibox command goes beside them, /stages/minibox: the stage tests run
# `minibox cleanup` on what a killed stage left, and the engine's tests run
# it for everything. Its companions, minibox-shim, minibox-init,
# minibox-keeper and minibox-lessons (minibox lesson), where the tree has
# them, go next to it,
# where minibox looks for them.
# One go build for all of them: faster than one per program. With several
# main packages and -o DIR/, each binary is named after its directory.
commands=(./cmd/minibox)
for companion in cmd/minibox-shim cmd/minibox-init cmd/minibox-keeper cmd/minibox-lessons; do
	if [[ -d $companion ]]; then
		commands+=("./$companion")
	fi
done
mkdir -p "$work/stages"
"$go" build -o "$work/stages/" "${stage_pkgs[@]}" "${commands[@]}" ||
	die "cannot build the stage programs (${stage_pkgs[*]}) and ${commands[*]}; the tests run them from MINIBOX_STAGE_BIN"
for nn in "${!stage_num[@]}"; do
	mv "$work/stages/${stage_num[$nn]}" "$root/stages/stage$nn"
done
for c in "${commands[@]}"; do
	mv "$work/stages/${c##*/}" "$root/stages/${c##*/}"
done

# --- Host programs the tests run (MINIBOX_VM_TOOLS) ----------------------------
# Each goes to /usr/bin with the shared libraries ldd names, at the same
# paths (the VM has no C library of its own). The engine's tests, say, push
# their image to a real docker-registry.
for tool in ${MINIBOX_VM_TOOLS:-}; do
	path=$(command -v "$tool") || die "MINIBOX_VM_TOOLS: '$tool' is not installed here"
	mkdir -p "$root/usr/bin"
	cp -L "$path" "$root/usr/bin/$tool"
	# ldd lines: "libc.so.6 => /lib/.../libc.so.6 (0x…)", "/lib64/ld-….so.2 (0x…)";
	# a static binary has none (ldd fails).
	while IFS= read -r lib; do
		mkdir -p "$root${lib%/*}"
		cp -L "$lib" "$root$lib"
	done < <(ldd "$path" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }')
	# skopeo refuses to copy without its trust policy.
	if [[ $tool == skopeo && -d /etc/containers ]]; then
		cp -rL /etc/containers "$root/etc/"
	fi
done

# --- The rest of the initramfs ------------------------------------------------
cp "$busybox" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 0755 "$root/init" "$root/bin/busybox"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
printf '%s\n' '127.0.0.1 localhost' '::1 localhost' >"$root/etc/hosts"

# go test runs a test binary in its package directory, and tests may read
# files there (testdata/). Copy the package's own files, not its subpackages.
rel=${pkgdir#"$modroot"}
mkdir -p "$root/src$rel"
find "$pkgdir" -maxdepth 1 -type f -exec cp '{}' "$root/src$rel/" ';'
if [[ -d $pkgdir/testdata ]]; then
	cp -r "$pkgdir/testdata" "$root/src$rel/"
fi
echo "/src$rel" >"$root/minibox/workdir"

# The test flags, each one single-quoted for /init's `eval "set -- ..."`.
# A file, not the kernel command line: that one mangles quotes and spaces.
args=("$@")
# The test binary has no timeout of its own (go test adds -test.timeout=10m):
# give it one shorter than the VM's, so a hung test dies with a goroutine dump
# instead of silently taking the VM down with it.
has_timeout=
for a in "${args[@]}"; do
	[[ $a == -test.timeout* || $a == --test.timeout* ]] && has_timeout=1
done
if [[ -z $has_timeout ]]; then
	args+=("-test.timeout=$((vm_timeout > 60 ? vm_timeout - 30 : vm_timeout * 3 / 4))s")
fi
for a in "${args[@]}"; do
	printf "'%s' " "${a//\'/\'\\\'\'}"
done >"$root/minibox/args"

# A new nonce for every run, so no test output can fake the result line.
nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
echo "$nonce" >"$root/minibox/nonce"

# No cpio package here: busybox has one. -R 0:0 makes everything root's even
# when built by another user. A missing cpio would leave a tiny, empty archive
# and a kernel panic, so check the size.
initrd=$work/initramfs.cpio.gz
# (busybox cpio reports "N blocks" on stderr: keep it off the screen.)
(cd "$root" && find . -mindepth 1 | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) >"$initrd" ||
	die "building the initramfs with busybox cpio failed"
size=$(stat -c %s "$initrd")
((size > 1000000)) || die "initramfs is only $size bytes: building it failed"

# --- Boot -------------------------------------------------------------------------
# - TCG (software emulation), not KVM: /dev/kvm on these machines is nested and
#   cannot run a stock kernel. Single-threaded TCG: the multi-threaded one
#   hangs about 1 boot in 100 when the kernel live-patches code (cpu.max).
# - panic=-1 + -no-reboot: a guest panic ends QEMU at once instead of hanging.
# - quiet loglevel=1: no kernel messages between test output lines (use
#   loglevel=7 to debug a boot).
# - The serial console is our only channel: QEMU prints it on stdout.
say "booting cgroup v2 VM ($kernel_release, TCG; up to ${vm_timeout}s)"
mkfifo "$work/serial"
# Background + wait (not a foreground pipeline) so that Ctrl-C or a kill runs
# our traps at once and they can stop QEMU.
timeout -k 10 "$vm_timeout" qemu-system-x86_64 \
	-nodefaults -display none -no-reboot \
	-accel tcg,thread=single -m "$vm_mem" \
	-serial stdio \
	-kernel "$vmlinuz" -initrd "$initrd" \
	-append 'console=ttyS0 quiet loglevel=1 panic=-1' \
	</dev/null >"$work/serial" &
vm_pid=$!

# Stream the guest's output with its CRLF line ends made LF; keep back our
# result line, write its exit status to a file, and drop what follows it (the
# kernel's "reboot: Power down").
marker="MINIBOX-V2VM-RESULT $nonce exit="
# mawk (Debian's awk) reads a pipe in blocks: without -W interactive it would
# see the result line, and show the tests' output, only when QEMU exits.
awk_opts=()
if awk -W version 2>/dev/null | grep -q mawk; then
	awk_opts=(-W interactive)
fi
awk ${awk_opts[@]+"${awk_opts[@]}"} -v marker="$marker" -v result="$work/result" '
	done { next }
	{
		sub(/\r$/, "")
		i = index($0, marker)
		if (i > 0) {
			if (i > 1) print substr($0, 1, i - 1)
			print substr($0, i + length(marker)) > result
			close(result)
			done = 1
		} else {
			print
		}
		fflush()
	}' <"$work/serial" &
filter_pid=$!

# Once the result line is in, the exit status is known: the guest only has to
# power off. If QEMU is still there 15 s later, stop it rather than wait for
# MINIBOX_VM_TIMEOUT. (Polls a file: bash cannot wait for "a line was read".)
(
	trap - EXIT INT TERM HUP
	while [[ ! -s $work/result ]]; do
		kill -0 "$vm_pid" 2>/dev/null || exit 0
		sleep 0.2
	done
	for ((i = 0; i < 75; i++)); do
		kill -0 "$vm_pid" 2>/dev/null || exit 0
		sleep 0.2
	done
	say "QEMU has not exited 15 s after the tests reported: stopping it"
	kill -TERM "$vm_pid" 2>/dev/null || true
) &
watch_pid=$!

vm_rc=0
wait "$vm_pid" || vm_rc=$?
vm_pid=
wait "$filter_pid" || true
filter_pid=
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=

if [[ ! -s $work/result ]]; then
	if ((vm_rc == 124)); then
		say "error: VM did not report a result (timeout or crash): killed after ${vm_timeout}s (MINIBOX_VM_TIMEOUT)"
	else
		say "error: VM did not report a result (timeout or crash): QEMU exit status $vm_rc"
	fi
	exit $((vm_rc == 0 ? 1 : vm_rc))
fi
rc=$(<"$work/result")
[[ $rc =~ ^[0-9]+$ ]] || die "bad result line from the VM: '$rc'"
if ((rc == 125)); then
	say "error: the VM's /init failed before the tests ran (see its message above)"
fi
exit "$rc"
