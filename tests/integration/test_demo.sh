#!/usr/bin/env bash
# tests/integration/test_demo.sh BUILD_DIR: runs `scripts/demo --quick` end to end against the
# binaries of BUILD_DIR (no bootstrap, no build) and checks that it completed the reference
# case: three runs, each with a passing verdict, and exit status 0.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "$1" && pwd)
out=$(mktemp)
db=$(mktemp -d)/demo.db
trap 'rm -f "$out"; rm -rf "$(dirname "$db")"' EXIT
passed=0 failed=0
check() { # NAME CONDITION...
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
    fi
}
rc=0
LT_SKIP_BOOTSTRAP=1 LT_SKIP_BUILD=1 LT_BUILD_DIR=$build LT_DEMO_DB=$db LOADTESTD_DEMO_PORT=0 \
    timeout 900 "$root/scripts/demo" --quick >"$out" 2>&1 </dev/null || rc=$?
cat "$out"
check "demo exits 0" test "$rc" -eq 0
for kind in generate capacity ratelimit; do
    check "$kind verdict printed and passed" grep -Eq "^  $kind +PASS" "$out"
done
check "three runs stored" test "$(sqlite3 "$db" 'SELECT COUNT(*) FROM runs')" -eq 3
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
