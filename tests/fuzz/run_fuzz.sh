#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh FUZZER SEED_DIR SECONDS: runs one libFuzzer target for a bounded
# time, starting from the committed seed corpus; new inputs go to a temporary directory (the
# committed corpus is never modified). A crash, leak or sanitizer report fails the test and
# leaves the reproducer in the build tree's fuzz-artifacts/.
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/lt-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts=$(dirname "$fuzzer")/fuzz-artifacts
mkdir -p "$artifacts"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$seeds"
