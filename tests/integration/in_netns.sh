#!/usr/bin/env bash
# tests/integration/in_netns.sh COMMAND...: runs COMMAND in a network namespace of its own that
# has only a loopback interface, so a test that aims runs at denied addresses (10.0.0.1,
# 169.254.169.254, ...) cannot send a packet off the machine even if a check were broken. As
# root a plain `unshare -n`; otherwise a user namespace as well (`unshare -r -n`).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
    flags=(-n)
else
    flags=(-r -n)
fi
exec unshare "${flags[@]}" -- bash -c 'ip link set lo up && exec "$@"' in_netns "$@"
