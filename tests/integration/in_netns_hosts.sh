#!/usr/bin/env bash
# tests/integration/in_netns_hosts.sh COMMAND...: runs COMMAND in a network namespace of its own
# that has only a loopback interface, carrying 10.0.0.1/32 and 169.254.169.254/32 as well, and in
# a private mount namespace where /etc/hosts is a private copy the test may rewrite (exported as
# LTD_HOSTS_FILE). Names then resolve (files first, see nsswitch.conf) to addresses the daemon must
# refuse, and nothing sent to them can leave the machine: they are on the namespace's lo, which
# has no route anywhere else. Root only (adding addresses needs CAP_NET_ADMIN in the namespace).
set -euo pipefail
hosts=$(mktemp /tmp/ltd-hosts.XXXXXX)
trap 'rm -f "$hosts"' EXIT
printf '127.0.0.1 localhost\n::1 localhost\n' >"$hosts"
export LTD_HOSTS_FILE=$hosts
unshare -m -n --propagation private -- bash -c '
    ip link set lo up
    ip addr add 10.0.0.1/32 dev lo
    ip addr add 169.254.169.254/32 dev lo
    mount --bind "$LTD_HOSTS_FILE" /etc/hosts
    exec "$@"' in_netns_hosts "$@"
