#!/usr/bin/env bash
# tests/integration/run_with_pg.sh CMD [ARGS...]: runs CMD against a private PostgreSQL 15 with
# pgvector (scripts/lib/services.sh: 127.0.0.1 only, a free port, files in a temporary
# directory) and stops the cluster whatever happens. CMD sees, besides services.sh's LT_PG_*:
#   LT_PG_DSN              role loadtestd (password), owner of database loadtestd, which has
#                          the vector extension; the schema `locked` there is postgres's, with
#                          USAGE only for loadtestd, and holds a table locked.traces that
#                          loadtestd may SELECT but not INSERT into
#   LT_PG_DSN_NOVEC        role ltnovec (password) on database ltnovec, which has no vector
#                          extension and which ltnovec (not a superuser; pgvector is not a
#                          trusted extension) cannot CREATE EXTENSION in; ltnovec may create
#                          tables in its public schema
#   LT_PG_TINY_TABLESPACE  name of a tablespace on a 4 MiB tmpfs that loadtestd may use, to see
#                          a real "No space left on device"; set only when the tmpfs could be
#                          mounted in a private mount namespace (root, unshare(1) allowed), so
#                          nothing outside this script and its children ever sees it
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# Re-run ourselves in a private mount namespace when we can, for the tiny tablespace: mounts
# made there are invisible to the rest of the machine and vanish with the namespace.
if [ -z "${LT_RUN_WITH_PG_NS:-}" ] && [ "$(id -u)" -eq 0 ] &&
    unshare --mount --propagation private true 2>/dev/null; then
    export LT_RUN_WITH_PG_NS=1
    exec unshare --mount --propagation private "$HERE/run_with_pg.sh" "$@"
fi

# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ltpg.XXXXXX")
tiny_mounted=0
cleanup() {
    local rc=$?
    lt_services_cleanup || true
    if [ "$tiny_mounted" = 1 ]; then umount "$tmp/tiny" 2>/dev/null || true; fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lt_pg_start "$tmp/pg"

psql_admin() {
    "$LT_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$LT_PG_SOCKET_DIR" -p "$LT_PG_PORT" \
        -U postgres "$@"
}

novec_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
psql_admin -d postgres >/dev/null <<EOF
CREATE ROLE ltnovec LOGIN PASSWORD '$novec_password';
CREATE DATABASE ltnovec OWNER postgres;
\\connect ltnovec
GRANT USAGE, CREATE ON SCHEMA public TO ltnovec;
\\connect $LT_PG_DB
CREATE SCHEMA locked;
GRANT USAGE ON SCHEMA locked TO $LT_PG_USER;
CREATE TABLE locked.traces (id bigint PRIMARY KEY, title text, context_text text,
    solution_text text, tags text[], created_at timestamptz, embedding vector(64));
GRANT SELECT ON locked.traces TO $LT_PG_USER;
EOF
export LT_PG_DSN_NOVEC="postgresql://ltnovec:$novec_password@127.0.0.1:$LT_PG_PORT/ltnovec"

if [ "${LT_RUN_WITH_PG_NS:-}" = 1 ]; then
    mkdir -p "$tmp/tiny"
    if mount -t tmpfs -o "size=4m,mode=0700,uid=$(id -u "$LT_PG_OS_USER"),gid=$(id -g "$LT_PG_OS_USER")" \
        tmpfs "$tmp/tiny" 2>/dev/null; then
        tiny_mounted=1
        psql_admin -d "$LT_PG_DB" >/dev/null <<EOF
CREATE TABLESPACE tiny LOCATION '$tmp/tiny';
GRANT CREATE ON TABLESPACE tiny TO $LT_PG_USER;
EOF
        export LT_PG_TINY_TABLESPACE=tiny
    fi
fi

# Not exec: the EXIT trap must stop the cluster after CMD.
"$@"
