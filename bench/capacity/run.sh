#!/usr/bin/env bash
# bench/capacity/run.sh: CPU cost per request of the capacity engine next to wrk, both saturating
# the same private nginx (1 worker, a ~75-byte JSON file, loopback only). Each round runs the engine
# twice, load.engine "auto" (the fast HTTP/1.1 client) and "libcurl", then wrk. Prints each round
# and the ratios of requests per CPU-second (capacity / wrk; the goal is >= 0.8). Figures:
# bench/capacity/README.md.
#
# Usage: bench/capacity/run.sh [BUILD_DIR] [SECONDS] [ROUNDS] [CONNECTIONS]
# Needs: nginx (Debian nginx-light), wrk, a configured build (cmake --build BUILD_DIR).
# Only 127.0.0.1 is used; only the nginx this script started is stopped (by its PID).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
secs=${2:-10}
rounds=${3:-3}
conns=${4:-50}
port=${BENCH_PORT:-18089}
work=$(mktemp -d /tmp/bench_capacity.XXXXXX)
chmod 755 "$work" # nginx workers run as nobody
nginx_pid=

cleanup() {
    if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/html" "$work/logs"
echo '{"ok":true,"service":"bench","items":[1,2,3],"message":"hello from nginx"}' > "$work/html/small.json"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $work/tmp_body;
    proxy_temp_path $work/tmp_proxy;
    fastcgi_temp_path $work/tmp_fcgi;
    uwsgi_temp_path $work/tmp_uwsgi;
    scgi_temp_path $work/tmp_scgi;
    server { listen 127.0.0.1:$port; root $work/html; location / { } }
}
CONF
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/small.json" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/small.json" >/dev/null || { echo "nginx does not serve the file" >&2; exit 1; }

gcc -std=c11 -O2 -g -pthread -I"$src/runners" -I"$src/common" "$here/bench_capacity.c" \
    "$build/runners/liblt_runners.a" "$build/common/liblt_common.a" \
    $(pkg-config --cflags --libs jansson libcurl libpq) -lm -o "$work/bench_capacity"

url="http://127.0.0.1:$port/small.json"
spec() { echo "{\"target\":{\"url\":\"$url\"},\"load\":{\"users\":$conns,\"rate_per_user\":0,\"duration_s\":$secs,\"model\":\"closed\",\"threads\":2,\"engine\":\"$1\"}}"; }
# wrk's CPU: user+sys of the finished child (getrusage RUSAGE_CHILDREN in a python wrapper).
wrk_cpu() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, re
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
n = int(re.search(r"(\d+) requests in", p.stdout).group(1))
cpu = ru.ru_utime + ru.ru_stime
print(f"requests={n} user_s={ru.ru_utime:.2f} sys_s={ru.ru_stime:.2f} cpu_s={cpu:.2f} us_per_req={cpu / n * 1e6:.1f}")
PY
}
us() { python3 -c "import re;print(float(re.search(r'us_per_req=([0-9.]+)','$1').group(1)))"; }
fast_sum=0; curl_sum=0; wrk_sum=0
for r in $(seq "$rounds"); do
    f=$("$work/bench_capacity" "$(spec auto)" 2)
    c=$("$work/bench_capacity" "$(spec libcurl)" 2)
    w=$(wrk_cpu wrk -t2 -c"$conns" -d"${secs}s" "$url")
    echo "round $r capacity fast-http1: $f"
    echo "round $r capacity libcurl   : $c"
    echo "round $r wrk                : $w"
    echo "round $r ratio (wrk us / capacity us): fast-http1 $(python3 -c "print(f'{$(us "$w")/$(us "$f"):.2f}')"), libcurl $(python3 -c "print(f'{$(us "$w")/$(us "$c"):.2f}')")"
    fast_sum=$(python3 -c "print($fast_sum+$(us "$f"))")
    curl_sum=$(python3 -c "print($curl_sum+$(us "$c"))")
    wrk_sum=$(python3 -c "print($wrk_sum+$(us "$w"))")
done
python3 -c "f=$fast_sum/$rounds; c=$curl_sum/$rounds; w=$wrk_sum/$rounds; print(f'mean CPU us/request: fast-http1 {f:.1f}, libcurl {c:.1f}, wrk {w:.1f}; requests per CPU-second ratio capacity/wrk: fast-http1 {w/f:.2f}, libcurl {w/c:.2f}')"
