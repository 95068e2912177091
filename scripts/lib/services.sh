# shellcheck shell=bash
# scripts/lib/services.sh: helpers, sourced by tests, benchmarks and the demo, that start
# private PostgreSQL 15 (with pgvector) and Redis servers for one run: each listens on
# 127.0.0.1 only, on a free port, with its files in a directory of the caller's (or a new
# temporary one), and is stopped again by what started it -- by its own PID or `pg_ctl stop`
# on its own data directory, never by name. The system's clusters/services are not touched.
#
#   . scripts/lib/services.sh
#   trap lt_services_cleanup EXIT      # stops whatever was started below, then removes
#                                      # the temporary directories the helpers made
#   lt_pg_start "$tmp/pg"              # exports LT_PG_PORT, LT_PG_DSN, ... (see below)
#   lt_redis_start "$tmp/redis"        # exports LT_REDIS_PORT, LT_REDIS_URL, LT_REDIS_PID
#   port=$(lt_free_port)
#
# One PostgreSQL and one Redis per shell; bootstrap installs what they need.
# Sourcing turns on `set -euo pipefail`: the callers are scripts that want it anyway.
set -euo pipefail

LT_PG_BIN=${LT_PG_BIN:-/usr/lib/postgresql/15/bin}

_lt_say() { printf 'services: %s\n' "$*" >&2; }

# lt_free_port: prints a TCP port that nothing on this machine uses now. It is picked
# below Linux's ephemeral range (32768-60999) so outgoing connections do not take it
# meanwhile; a server that still loses the race is restarted on another port.
lt_free_port() {
    local used port i
    # Local ports (hex) of every TCP socket, listening or not, IPv4 and IPv6.
    used=$(awk 'FNR > 1 { split($2, a, ":"); print a[2] }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if ! grep -qx "$(printf '%04X' "$port")" <<<"$used"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    _lt_say "no free port found"
    return 1
}

# _lt_wait_for SECONDS CMD...: retries CMD every 0.1 s until it succeeds or time runs out.
_lt_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# _lt_alive PID: true while PID runs (a zombie, exited but not yet reaped, does not count).
_lt_alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# _lt_dir VAR NAME DIR: makes DIR (or a new temporary directory when DIR is empty), stores
# its absolute path in VAR, and in VAR_MADE whether we created it (then we remove it).
_lt_dir() {
    local var=$1 name=$2 dir=${3:-} made=0
    if [ -z "$dir" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/loadtestd-$name.XXXXXX")
        made=1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    printf -v "$var" '%s' "$dir"
    printf -v "${var}_MADE" '%s' "$made"
}

# ---------------------------------------------------------------------------------------
# PostgreSQL

# As root, PostgreSQL runs as this system user (initdb refuses to run as root).
LT_PG_OS_USER=${LT_PG_OS_USER:-postgres}
# What this shell started, kept unexported: a child process that inherits LT_PG_* or
# LT_REDIS_* and sources this file must not stop its parent's servers.
_lt_pg_dir=
_lt_pg_dir_MADE=0
_lt_pg_data=

# _lt_pg CMD...: runs CMD as the user PostgreSQL runs as.
_lt_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$LT_PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

# _lt_pg_prepare_root_dir DIR: as root, lets the PostgreSQL user own DIR and reach it
# (adds search permission, o+x, to the temporary directories above it that we own).
_lt_pg_prepare_root_dir() {
    local dir=$1 up tmp
    if ! id -u "$LT_PG_OS_USER" >/dev/null 2>&1; then
        LT_PG_OS_USER=loadtestd-test
        id -u "$LT_PG_OS_USER" >/dev/null 2>&1 ||
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$LT_PG_OS_USER"
    fi
    tmp=$(cd "${TMPDIR:-/tmp}" && pwd)
    up=$(dirname "$dir")
    while [ "$up" != / ] && [ "${up#"$tmp"}" != "$up" ]; do
        if [ -O "$up" ]; then chmod o+x "$up"; fi
        up=$(dirname "$up")
    done
    chown -R "$LT_PG_OS_USER:" "$dir"
    if ! runuser -u "$LT_PG_OS_USER" -- test -w "$dir"; then
        _lt_say "user $LT_PG_OS_USER cannot write $dir: pass a directory under ${TMPDIR:-/tmp}"
        return 1
    fi
}

# lt_pg_start [DIR]: initdb + start a private PostgreSQL 15 in DIR (DIR/data, DIR/socket,
# DIR/postgresql.log). Superuser `postgres` is trusted on the socket and on 127.0.0.1;
# the role `loadtestd` logs in with a password (scram-sha-256) and owns the database
# `loadtestd`, which has the `vector` extension. Exports:
#   LT_PG_PORT LT_PG_HOST (127.0.0.1) LT_PG_SOCKET_DIR LT_PG_DATA LT_PG_LOG
#   LT_PG_USER LT_PG_PASSWORD LT_PG_DB
#   LT_PG_DSN        postgresql://loadtestd:PASSWORD@127.0.0.1:PORT/loadtestd
#   LT_PG_ADMIN_DSN  postgresql://postgres@127.0.0.1:PORT/loadtestd   (superuser, no password)
lt_pg_start() {
    if [ -n "$_lt_pg_data" ]; then
        _lt_say "PostgreSQL already started in $_lt_pg_data"
        return 1
    fi
    local dir port attempt password
    _lt_dir _lt_pg_dir pg "${1:-}"
    dir=$_lt_pg_dir
    mkdir -p "$dir/socket"
    if [ "$(id -u)" -eq 0 ]; then _lt_pg_prepare_root_dir "$dir"; fi
    if [ ${#dir} -gt 80 ]; then
        _lt_say "$dir is too long for a unix socket path; use a shorter directory"
        return 1
    fi

    _lt_pg "$LT_PG_BIN/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync \
        >"$dir/initdb.log" 2>&1 || {
        _lt_say "initdb failed:"
        tail -n 20 "$dir/initdb.log" >&2
        return 1
    }
    # Trust the superuser over TCP too (tests connect to 127.0.0.1); everyone else needs
    # a password. Durability is off: these clusters live for one test run.
    # (Written by us into files initdb made: they keep their owner.)
    cat >"$dir/data/pg_hba.conf" <<'EOF'
local all all                trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
EOF
    cat >>"$dir/data/postgresql.conf" <<EOF

# loadtestd test cluster (scripts/lib/services.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/socket'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # Callers may add settings (later lines win), e.g. LT_PG_EXTRA_CONF="$(lt_pg_tuning_conf)".
    if [ -n "${LT_PG_EXTRA_CONF:-}" ]; then
        printf '%s\n' "$LT_PG_EXTRA_CONF" >>"$dir/data/postgresql.conf"
    fi
    for attempt in 1 2 3 4 5; do
        port=$(lt_free_port)
        if _lt_pg "$LT_PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
            -o "-p $port" start >"$dir/pg_ctl.log" 2>&1; then
            break
        fi
        port=
        grep -q 'could not bind\|already in use' "$dir/postgresql.log" 2>/dev/null || break
        _lt_say "port taken, retrying (attempt $attempt)"
    done
    if [ -z "$port" ]; then
        _lt_say "PostgreSQL did not start:"
        tail -n 20 "$dir/pg_ctl.log" "$dir/postgresql.log" >&2 || true
        return 1
    fi
    _lt_pg_data=$dir/data
    export LT_PG_DATA=$dir/data LT_PG_LOG=$dir/postgresql.log
    export LT_PG_PORT=$port LT_PG_HOST=127.0.0.1 LT_PG_SOCKET_DIR=$dir/socket

    password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    export LT_PG_USER=loadtestd LT_PG_PASSWORD=$password LT_PG_DB=loadtestd
    export LT_PG_DSN="postgresql://$LT_PG_USER:$password@127.0.0.1:$port/$LT_PG_DB"
    export LT_PG_ADMIN_DSN="postgresql://postgres@127.0.0.1:$port/$LT_PG_DB"
    "$LT_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -U postgres \
        -d postgres >"$dir/setup.log" 2>&1 <<EOF || {
CREATE ROLE $LT_PG_USER LOGIN PASSWORD '$password';
CREATE DATABASE $LT_PG_DB OWNER $LT_PG_USER;
\\connect $LT_PG_DB
CREATE EXTENSION IF NOT EXISTS vector;
EOF
        _lt_say "setting up the test database failed:"
        cat "$dir/setup.log" >&2
        lt_pg_stop
        return 1
    }
}

# lt_pg_stop: stops the cluster lt_pg_start started (and removes its directory when
# lt_pg_start made it). Does nothing when none runs.
lt_pg_stop() {
    local data=$_lt_pg_data pid
    if [ -n "$data" ] && [ -f "$data/postmaster.pid" ]; then
        if ! _lt_pg "$LT_PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
            if [ -n "$pid" ]; then
                _lt_say "pg_ctl stop failed; killing postmaster $pid"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    if [ "$_lt_pg_dir_MADE" = 1 ] && [ -n "$_lt_pg_dir" ]; then rm -rf "$_lt_pg_dir"; fi
    _lt_pg_dir='' _lt_pg_dir_MADE=0 _lt_pg_data=''
    unset LT_PG_DATA LT_PG_LOG LT_PG_PORT LT_PG_HOST LT_PG_SOCKET_DIR LT_PG_USER \
        LT_PG_PASSWORD LT_PG_DB LT_PG_DSN LT_PG_ADMIN_DSN
}

# ---------------------------------------------------------------------------------------
# Redis

_lt_redis_dir=
_lt_redis_dir_MADE=0
_lt_redis_pid=

_lt_redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

# lt_redis_start [DIR]: starts a private redis-server (no persistence) in the background,
# with its log in DIR/redis.log. Exports LT_REDIS_PORT, LT_REDIS_URL, LT_REDIS_PID.
lt_redis_start() {
    if [ -n "$_lt_redis_pid" ]; then
        _lt_say "Redis already started (pid $_lt_redis_pid)"
        return 1
    fi
    local dir port pid attempt
    _lt_dir _lt_redis_dir redis "${1:-}"
    dir=$_lt_redis_dir
    for attempt in 1 2 3 4 5; do
        port=$(lt_free_port)
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$dir" --logfile "$dir/redis.log" \
            </dev/null >/dev/null 2>&1 &
        pid=$!
        if _lt_wait_for 10 _lt_redis_ping "$port"; then
            _lt_redis_pid=$pid
            export LT_REDIS_PORT=$port LT_REDIS_PID=$pid
            export LT_REDIS_URL=redis://127.0.0.1:$port/0
            return 0
        fi
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        grep -q 'Address already in use' "$dir/redis.log" 2>/dev/null || break
        _lt_say "port taken, retrying (attempt $attempt)"
    done
    _lt_say "Redis did not start:"
    tail -n 20 "$dir/redis.log" >&2 || true
    return 1
}

# lt_redis_stop: stops the redis-server lt_redis_start started (by its PID).
lt_redis_stop() {
    local pid=$_lt_redis_pid
    if [ -n "$pid" ] && _lt_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! _lt_wait_for 10 eval "! _lt_alive $pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Reap it when it is our child (it is not when stopped from a subshell).
    if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
    if [ "$_lt_redis_dir_MADE" = 1 ] && [ -n "$_lt_redis_dir" ]; then rm -rf "$_lt_redis_dir"; fi
    _lt_redis_dir='' _lt_redis_dir_MADE=0 _lt_redis_pid=''
    unset LT_REDIS_PORT LT_REDIS_PID LT_REDIS_URL
}

# lt_services_cleanup: stops everything the helpers above started; for EXIT traps.
lt_services_cleanup() {
    lt_redis_stop || true
    lt_pg_stop || true
}
