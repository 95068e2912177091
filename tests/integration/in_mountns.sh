#!/usr/bin/env bash
# tests/integration/in_mountns.sh COMMAND...: runs COMMAND in a private mount namespace (mounts
# made inside never show outside and vanish with the namespace), so a test may mount a small
# tmpfs, fill it, remount it read-only. Sets LTD_PRIVATE_MOUNTNS=1, which such tests require
# before they mount anything. As root a plain `unshare -m`; otherwise a user namespace as well.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
    flags=(-m)
else
    flags=(-r -m)
fi
export LTD_PRIVATE_MOUNTNS=1
exec unshare "${flags[@]}" --propagation private -- "$@"
