#!/bin/busybox sh
# shellcheck shell=dash # busybox ash: shellcheck checks it as dash, its closest shell
# /init of the throw-away cgroup v2 VM (copied into the initramfs by run.sh).
#
# The kernel runs this as PID 1, as root, with nothing mounted. It prepares a
# minimal Linux userland (the mounts a container engine expects, the kernel
# modules, a pure cgroup v2 hierarchy), runs the Go test binary that run.sh put
# in /minibox, prints one result line that the host looks for, and powers off.
#
# The result line carries a random nonce chosen by run.sh for this run, so no
# test output can fake it: "MINIBOX-V2VM-RESULT <nonce> exit=<status>".
#
# Everything here is busybox: the initramfs has no other userland.

# --- A root that allows pivot_root ---------------------------------------------
# The initramfs is the kernel's "rootfs", the absolute root mount, and
# pivot_root(2) refuses to move it (EINVAL) -- but every container engine,
# minibox's stages included, pivot_roots. The usual fix (switch_root) copies
# everything to a new tmpfs. Cheaper: bind-mount the root onto a directory of
# itself, move that mount over "/", and chroot into it. The new root is then an
# ordinary mount with a parent, which pivot_root accepts. This script then runs
# once more from the top, inside the new root.
if [ -z "$MINIBOX_V2VM_REROOTED" ]; then
	export MINIBOX_V2VM_REROOTED=1
	/bin/busybox mkdir -p /.root
	/bin/busybox mount --bind / /.root &&
		cd /.root &&
		/bin/busybox mount --move . / &&
		exec /bin/busybox chroot . /init
	echo "cgroupv2-vm init: cannot re-root the initramfs; pivot_root will fail" >&2
fi
unset MINIBOX_V2VM_REROOTED
# The kernel makes the initramfs root world-writable (1777); make it look
# like any root directory.
/bin/busybox chmod 0755 /

# Busybox installs its applets as symlinks (sh, mount, ip, ...) into /bin, so
# that the rest of this script and the tests find them on PATH.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

# Read the nonce, then delete the file so the tests cannot see it.
nonce=$(cat /minibox/nonce)
rm -f /minibox/nonce

report() { # report STATUS: the line run.sh waits for, then power off.
	# (run.sh also finds it after a last test output line without newline.)
	printf 'MINIBOX-V2VM-RESULT %s exit=%s\n' "$nonce" "$1"
	# Wait until the serial line has sent everything before the power goes:
	# tcsetattr(TCSADRAIN), which stty does, returns only once the output
	# queue is empty.
	stty onlcr 2>/dev/null
	poweroff -f
	sleep 5 # poweroff -f does not return; this only avoids a kernel panic if it did
}

die() { # die MESSAGE: setup failed; say why and report a distinct status.
	echo "cgroupv2-vm init: $*" >&2
	report 125
}

# --- The usual pseudo file systems ---------------------------------------------
mount -t devtmpfs devtmpfs /dev || die "cannot mount devtmpfs"
# The kernel may have started us without a console; from now on use it.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /proc /sys /tmp /run /root
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || die "cannot mount devpts"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || die "cannot mount /dev/shm"
mount -t proc proc /proc || die "cannot mount proc"
mount -t sysfs sysfs /sys || die "cannot mount sysfs"
# tmpfs for /tmp and /run: overlayfs refuses upper/work directories on the
# initramfs, and tests put their temporary directories under $TMPDIR.
mount -t tmpfs -o mode=1777 tmpfs /tmp || die "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /run || die "cannot mount /run"
ip link set lo up || die "cannot bring lo up"
hostname minibox-v2vm

# --- Kernel modules --------------------------------------------------------------
# run.sh named them NN-name.ko in dependency order (llc before stp before
# bridge), so a sorted glob is the load order. No modprobe: there is no
# modules.dep in the initramfs.
for ko in /minibox/modules/*.ko; do
	[ -e "$ko" ] || continue
	insmod "$ko" || die "insmod $ko failed"
done

# --- cgroup v2 only ----------------------------------------------------------------
# This kernel is booted without any cgroup v1 mount, so the unified hierarchy
# owns every controller. Enable the ones the tests use for child groups.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || die "cannot mount cgroup2"
echo '+memory +pids +cpu' >/sys/fs/cgroup/cgroup.subtree_control ||
	die "cannot enable memory, pids and cpu in /sys/fs/cgroup/cgroup.subtree_control"

# --- Run the tests ---------------------------------------------------------------
export HOME=/root TMPDIR=/tmp
export MINIBOX_STAGE_BIN=/stages # prebuilt stage programs (run.sh)
export MINIBOX_REQUIRE_ROOT=1    # a missing prerequisite is a failure, not a skip
export MINIBOX_IN_V2VM=1         # tells tests they are in this VM
# go test runs a test binary in its package's source directory; run.sh put a
# copy of that directory (with its testdata) at the path named here.
cd "$(cat /minibox/workdir)" || die "cannot cd to the package directory"
# The test flags, shell-quoted by run.sh (never through the kernel command line,
# which mangles quotes and spaces).
eval "set -- $(cat /minibox/args)"
/minibox/test "$@"
report "$?"
