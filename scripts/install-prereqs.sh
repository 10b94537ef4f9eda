#!/usr/bin/env bash
# Install what the lessons (and, with --test, the test suite) need on
# Debian or Ubuntu, skipping what is already there. On other distributions
# (no dpkg-query) it checks for the commands those packages provide, prints
# what to install for the ones missing and exits 1; 0 if nothing is missing.
#
#   scripts/install-prereqs.sh          busybox-static iproute2 iptables, and
#                                       docker-registry skopeo umoci curl (lesson 6
#                                       starts a local registry, puts an image
#                                       in it with umoci and skopeo, asks it
#                                       with curl), runc (lesson 7 runs the
#                                       engine's bundle on runc too), podman
#                                       (lesson 7 hands it an image minibox
#                                       built)
#   scripts/install-prereqs.sh --test   … and shellcheck (make lint), buildah
#                                       (images it builds run on minibox), and
#                                       qemu-system-x86 where make test runs
#                                       the cgroup v2 VM (not on a pure v2 host)
#   scripts/install-prereqs.sh [--test] --list
#                                       print the packages it wants, one a
#                                       line, and change nothing
set -euo pipefail

# needs_v2vm: make test-v2vm boots the cgroup v2 VM, i.e. the host's cgroup
# root is not cgroup2 (v1 or hybrid). The Makefile asks the same question.
# MINIBOX_CGROUP_ROOT lets the tests point it elsewhere.
needs_v2vm() {
	[[ "$(stat -fc %T "${MINIBOX_CGROUP_ROOT:-/sys/fs/cgroup}")" != cgroup2fs ]]
}

packages=(busybox-static iproute2 iptables docker-registry skopeo umoci curl runc podman)
target=tour
list=false
for arg in "$@"; do
	case $arg in
	--test) target='test' ;; # quoted: a word, not the test command
	--list) list=true ;;
	*)
		echo "usage: $0 [--test] [--list]" >&2
		exit 2
		;;
	esac
done
if [[ $target == test ]]; then
	packages+=(shellcheck buildah)
	if needs_v2vm; then
		packages+=(qemu-system-x86)
	fi
fi
if $list; then
	printf '%s\n' "${packages[@]}"
	exit 0
fi

# Go is not a package here (distributions' Go is often too old): check it.
go=${GO:-go}
min_go=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$(dirname "$0")/../go.mod")
if ! have=$("$go" env GOVERSION 2>/dev/null); then
	echo "minibox needs Go $min_go or newer: https://go.dev/doc/install" >&2
	exit 1
fi
have=${have#go}
if [[ "$(printf '%s\n%s\n' "$min_go" "$have" | sort -V | head -n1)" != "$min_go" ]]; then
	echo "minibox needs Go $min_go or newer; $go is $have: https://go.dev/doc/install" >&2
	exit 1
fi

# is_static FILE: FILE is an ELF executable with no program interpreter
# (PT_INTERP), i.e. statically linked. readelf (binutils) may be missing:
# then ask file(1), then ldd.
is_static() {
	local out
	if command -v readelf >/dev/null; then
		# Captured, not piped into grep -q: with pipefail, grep quitting
		# early could fail readelf with SIGPIPE.
		out=$(readelf -l "$1" 2>/dev/null) || return 1
		[[ $out != *INTERP* ]]
	elif command -v file >/dev/null; then
		out=$(file -L "$1" 2>/dev/null) || return 1
		[[ $out == *"statically linked"* || $out == *"static-pie linked"* ]]
	elif command -v ldd >/dev/null; then
		if ldd "$1" >/dev/null 2>&1; then # ldd fails on static binaries
			return 1
		fi
	else
		echo "cannot tell whether $1 is static (no readelf, file or ldd); minibox doctor checks it" >&2
	fi
}

# have_static_busybox: a static busybox where the demo rootfs looks for one.
have_static_busybox() {
	local p
	for p in "$(command -v busybox || true)" /bin/busybox /usr/bin/busybox; do
		[[ -n $p && -x $p ]] && is_static "$p" && return 0
	done
	return 1
}

if ! command -v dpkg-query >/dev/null; then
	# Not Debian or Ubuntu: check for what the packages provide instead, and
	# say what to install. This script installs nothing here.
	missing=()
	have_static_busybox ||
		missing+=("a static busybox: busybox-static (Debian/Ubuntu), busybox (Fedora)")
	command -v ip >/dev/null ||
		missing+=("ip: iproute2 (Debian/Ubuntu), iproute (Fedora)")
	command -v iptables >/dev/null ||
		missing+=("iptables: iptables (Debian/Ubuntu), iptables-nft (Fedora)")
	# Fedora's docker-distribution installs the registry as "registry":
	# lesson 6 and the tests run it as docker-registry (a link will do).
	command -v docker-registry >/dev/null ||
		missing+=("docker-registry: docker-registry (Debian/Ubuntu), docker-distribution (Fedora: link /usr/bin/registry as docker-registry)")
	command -v skopeo >/dev/null ||
		missing+=("skopeo: skopeo (Debian/Ubuntu, Fedora)")
	command -v umoci >/dev/null ||
		missing+=("umoci: umoci (Debian/Ubuntu, Fedora)")
	command -v curl >/dev/null ||
		missing+=("curl: curl (Debian/Ubuntu, Fedora)")
	command -v runc >/dev/null ||
		missing+=("runc: runc (Debian/Ubuntu, Fedora)")
	command -v podman >/dev/null ||
		missing+=("podman: podman (Debian/Ubuntu, Fedora)")
	if [[ $target == test ]]; then
		command -v shellcheck >/dev/null ||
			missing+=("shellcheck: shellcheck (Debian/Ubuntu), ShellCheck (Fedora)")
		command -v buildah >/dev/null ||
			missing+=("buildah: buildah (Debian/Ubuntu, Fedora)")
		if needs_v2vm; then
			command -v qemu-system-x86_64 >/dev/null ||
				missing+=("qemu-system-x86_64: qemu-system-x86 (Debian/Ubuntu, Fedora)")
		fi
	fi
	[[ ${#missing[@]} -eq 0 ]] && exit 0
	echo "minibox needs these; install them with your distribution's package manager, then run make again:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	# dpkg-query prints "install ok installed" for an installed package.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
	echo "minibox needs these packages (names as on Debian/Ubuntu): ${missing[*]}" >&2
	echo "install them with your distribution's package manager, then run make again" >&2
	exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "missing packages: ${missing[*]}; run: sudo make $target" >&2
	exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: qemu alone would otherwise pull in a desktop's worth.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
	# Ubuntu ships shellcheck, docker-registry, skopeo, umoci (and
	# busybox-static) in universe.
	echo "could not install ${missing[*]}; on Ubuntu, some are in the universe component: sudo add-apt-repository universe" >&2
	exit 1
fi
