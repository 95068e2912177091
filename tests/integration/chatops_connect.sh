#!/usr/bin/env bash
# tests/integration/chatops_connect.sh COMMAND...: runs COMMAND in a network namespace that has
# only loopback and a mount namespace whose /etc/hosts also maps rebind.test to
# 169.254.169.254, so a webhook whose host name is on the allowlist but resolves to a denied
# address can be tried without any packet leaving the machine (the connect-time check must
# refuse it; even if it did not, the namespace has no route off the machine).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
    flags=(-n -m)
else
    flags=(-r -n -m)
fi
exec unshare "${flags[@]}" -- bash -c '
    set -euo pipefail
    ip link set lo up
    hosts=$(mktemp)
    { cat /etc/hosts; echo "169.254.169.254 rebind.test"; } > "$hosts"
    mount --bind "$hosts" /etc/hosts
    exec "$@"' chatops_connect "$@"
