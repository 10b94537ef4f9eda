#!/usr/bin/env bash
# Run a command as the user who ran sudo, with that user's HOME (so Go uses
# their module and build caches), keeping the rest of the environment
# (GOFLAGS, GOPROXY… passed to make stay in force). Without sudo, or as
# root's own sudo, it runs the command as it is.
#
#   scripts/as-invoking-user.sh go build -o bin/minibox ./cmd/minibox
#
# make uses it under sudo so that nothing in the student's checkout becomes
# root's, and so that builds work offline from the caches that the user's own
# online builds filled.
set -euo pipefail

if [[ $# -eq 0 ]]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi
if [[ $(id -u) -ne 0 || -z ${SUDO_UID:-} || ${SUDO_UID} == 0 ]]; then
	exec "$@"
fi

# getent: the user database, including a directory service, as sudo sees it.
if ! entry=$(getent passwd "$SUDO_UID"); then
	echo "$0: SUDO_UID=$SUDO_UID is not in the user database" >&2
	exit 1
fi
IFS=: read -r name _ _ _ _ home _ <<<"$entry"
# setpriv (util-linux): --init-groups gives the user's supplementary groups.
exec setpriv --reuid="$SUDO_UID" --regid="${SUDO_GID:?SUDO_UID is set but SUDO_GID is not}" --init-groups \
	env HOME="$home" USER="$name" LOGNAME="$name" "$@"
