#!/usr/bin/env bash
# tests/browser/test_dashboard.sh: the dashboard in headless Chromium (Debian's `chromium`,
# installed by scripts/bootstrap) against a real loadtestd; see test_dashboard.py.
# Usage: test_dashboard.sh LOADTESTD TARGETS_DIR SOURCE_DIR ARTIFACTS_DIR
# Screenshots land in ARTIFACTS_DIR (dashboard.png, dashboard-run.png, dashboard-live.png).
set -euo pipefail

if [ $# -ne 4 ]; then
    sed -n '4,5s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "test_dashboard: chromium is not installed (scripts/bootstrap installs it)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$4"
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/test_dashboard.py" \
    --loadtestd "$1" --targets "$2" --source "$3" --artifacts "$4"
