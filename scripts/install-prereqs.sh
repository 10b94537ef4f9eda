#!/usr/bin/env bash
# Install what the lessons (and, with --test, the test suite) need on
# Debian or Ubuntu, skipping what is already there. On other distributions
# it prints what to install instead.
#
#   scripts/install-prereqs.sh          busybox-static iproute2 iptables
#   scripts/install-prereqs.sh --test   … and qemu-system-x86 (the cgroup v2 VM)
set -euo pipefail

packages=(busybox-static iproute2 iptables)
target=tour
if [[ "${1:-}" == "--test" ]]; then
	packages+=(qemu-system-x86)
	target=test
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
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
