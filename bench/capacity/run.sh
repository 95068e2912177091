#!/usr/bin/env bash
# bench/capacity/run.sh: the capacity engine's benchmark, in four parts (figures:
# bench/capacity/README.md).
#   cpu     CPU cost per request next to wrk, both saturating the same private nginx (1 worker, a
#           ~75-byte JSON file, loopback only). Each round runs the engine twice, load.engine
#           "auto" (the fast HTTP/1.1 client) and "libcurl", then wrk. Goal: requests per
#           CPU-second >= 0.8 x wrk's.
#   locust  adds Locust (Debian python3-locust, FastHttpUser, one process, no wait) to each round,
#           same nginx, same duration, same 50 users. Goal: loadtestd >= 10 x Locust's requests
#           per CPU-second.
#   fixed   fixed-rate accuracy: 1,000 req/s (50 users x 20/s, open model) at latency_target's
#           /fixed?ms=10, loadtestd (in-process, bench_capacity) next to wrk paced by a Lua
#           delay() script. Goal: p50 within 0.3 ms of wrk's, p99 within 1 ms.
#   memory  10,000 open-model users x 1 req/s against nginx, run by a real loadtestd daemon through
#           its REST API; its peak RSS (VmHWM). Goal: < 256 MB.
#
# Usage: bench/capacity/run.sh [--parts LIST] [--fixed-secs N] [--mem-secs N] [--mem-users N]
#                              [BUILD_DIR] [SECONDS] [ROUNDS] [CONNECTIONS]
#   LIST: comma-separated of cpu,locust,fixed,memory (default: all; also $BENCH_PARTS).
#   SECONDS/ROUNDS/CONNECTIONS are the cpu and locust parts' (default 10 s, 2 rounds, 50).
#   --fixed-secs (default 20) and --mem-secs (default 20) are the other two parts' durations.
# Needs: nginx (Debian nginx-light), wrk, python3-locust (locust part), curl, gcc, pkg-config,
#   a build of loadtestd and latency_target (cmake --build BUILD_DIR --target loadtestd
#   latency_target). bench_capacity is compiled by this script into its temp dir.
# Only 127.0.0.1 is used; only the processes this script started are stopped (by their PIDs).
# The default run takes about 2.5 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)

parts=${BENCH_PARTS:-cpu,locust,fixed,memory}
fixed_secs=20
mem_secs=20
mem_users=10000
pos=()
while [ $# -gt 0 ]; do
    case $1 in
        --parts) parts=$2; shift 2 ;;
        --parts=*) parts=${1#*=}; shift ;;
        --fixed-secs) fixed_secs=$2; shift 2 ;;
        --mem-secs) mem_secs=$2; shift 2 ;;
        --mem-users) mem_users=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) pos+=("$1"); shift ;;
    esac
done
build=${pos[0]:-$src/build}
build=$(cd "$build" && pwd)
secs=${pos[1]:-10}
rounds=${pos[2]:-2}
conns=${pos[3]:-50}
port=${BENCH_PORT:-18089}
want() { case ",$parts," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for p in ${parts//,/ }; do
    case $p in cpu|locust|fixed|memory) ;; *) echo "unknown part: $p" >&2; exit 2 ;; esac
done

work=$(mktemp -d /tmp/bench_capacity.XXXXXX)
chmod 755 "$work" # nginx workers run as nobody
results=$work/results # one "key=value ..." line per measurement, summarised at the end
: > "$results"
nginx_pid=
target_pid=
daemon_pid=

stop() { # stop one process this script started, by PID
    if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi
}
cleanup() {
    stop "$daemon_pid"
    stop "$target_pid"
    stop "$nginx_pid"
    rm -rf "$work"
}
trap cleanup EXIT

# --- nginx --------------------------------------------------------------------------------------
mkdir -p "$work/html" "$work/logs"
echo '{"ok":true,"service":"bench","items":[1,2,3],"message":"hello from nginx"}' > "$work/html/small.json"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 32768;
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
    server { listen 127.0.0.1:$port backlog=4096; root $work/html; location / { } }
}
CONF
if want cpu || want locust || want memory; then
    nginx -p "$work" -c "$work/nginx.conf" 2>"$work/logs/nginx.stderr" &
    nginx_pid=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/small.json" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$port/small.json" >/dev/null || { echo "nginx does not serve the file" >&2; exit 1; }
fi
url="http://127.0.0.1:$port/small.json"

# shellcheck disable=SC2046 # pkg-config's flags are meant to be split
gcc -std=c11 -O2 -g -pthread -I"$src/runners" -I"$src/common" "$here/bench_capacity.c" \
    "$build/runners/liblt_runners.a" "$build/common/liblt_common.a" \
    $(pkg-config --cflags --libs jansson libcurl libpq) -lm -o "$work/bench_capacity"

# --- helpers ------------------------------------------------------------------------------------
# field KEY "k=v k=v ...": the value of KEY.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
# cpu_of OUT CMD...: runs CMD (stdout+stderr to OUT), prints the user/sys CPU seconds of its whole
# waited-for process tree (getrusage RUSAGE_CHILDREN in a python wrapper).
cpu_of() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT).returncode
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"rc={rc} user_s={ru.ru_utime:.2f} sys_s={ru.ru_stime:.2f} cpu_s={ru.ru_utime + ru.ru_stime:.2f}")
PY
}
# wrk_parse FILE: requests, requests/s and the --latency percentiles (ms) from wrk's output.
wrk_parse() {
    python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
n = int(re.search(r"(\d+) requests in", t).group(1))
rps = float(re.search(r"Requests/sec:\s*([0-9.]+)", t).group(1))
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
pct = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", t, re.M)}
sock = re.search(r"Socket errors:.*", t)
errs = sock.group(0).replace(" ", "") if sock else "none"
out = f"requests={n} rps={rps:.1f}"
if pct:
    out += f" p50_ms={pct['50']:.3f} p99_ms={pct['99']:.3f}"
print(out + f" socket_errors={errs}")
PY
}
calc() { python3 -c "print(f'{$1:.2f}')"; }

# --- parts cpu and locust -----------------------------------------------------------------------
spec() { echo "{\"target\":{\"url\":\"$url\"},\"load\":{\"users\":$conns,\"rate_per_user\":0,\"duration_s\":$secs,\"model\":\"closed\",\"threads\":2,\"engine\":\"$1\"}}"; }
if want locust; then
    mkdir -p "$work/locust"
    cat > "$work/locust/locustfile.py" <<'PY'
from locust import FastHttpUser, constant, task


class Bench(FastHttpUser):
    wait_time = constant(0)

    @task
    def small(self):
        self.client.get("/small.json")
PY
    # Locust's start-up CPU (interpreter, imports), counted in its figures below; for the record.
    lstart=$(cpu_of "$work/locust/import.out" /usr/bin/python3 -c 'import locust.main, locust.contrib.fasthttp')
    echo "locust start-up (import) CPU: $lstart"
    echo "part=locust_startup $lstart" >> "$results"
fi
if want cpu || want locust; then
    for r in $(seq "$rounds"); do
        if want cpu; then
            f=$(timeout $((secs + 60)) "$work/bench_capacity" "$(spec auto)" 2)
            c=$(timeout $((secs + 60)) "$work/bench_capacity" "$(spec libcurl)" 2)
            wc=$(cpu_of "$work/wrk.out" wrk -t2 -c"$conns" -d"${secs}s" "$url")
            w="$(wrk_parse "$work/wrk.out") $wc"
            w="$w us_per_req=$(calc "$(field cpu_s "$w") / $(field requests "$w") * 1e6")"
            echo "round $r capacity fast-http1: $f"
            echo "round $r capacity libcurl   : $c"
            echo "round $r wrk                : $w"
            echo "round $r ratio (wrk us / capacity us): fast-http1 $(calc "$(field us_per_req "$w") / $(field us_per_req "$f")"), libcurl $(calc "$(field us_per_req "$w") / $(field us_per_req "$c")")"
            { echo "part=cpu round=$r tool=fast $f"; echo "part=cpu round=$r tool=libcurl $c"; echo "part=cpu round=$r tool=wrk $w"; } >> "$results"
        fi
        if want locust; then
            rm -f "$work/locust/"*.csv
            lc=$(cd "$work/locust" && cpu_of "$work/locust/out" timeout $((secs + 60)) /usr/bin/python3 -m locust \
                -f locustfile.py --headless -u "$conns" -r "$conns" -t "${secs}s" --only-summary \
                --csv "$work/locust/l" -H "http://127.0.0.1:$port" --loglevel WARNING)
            l=$(python3 - "$work/locust/l_stats.csv" "$secs" <<'PY'
import csv, sys
row = [x for x in csv.DictReader(open(sys.argv[1])) if x["Name"] == "Aggregated"][0]
n, fails = int(row["Request Count"]), int(row["Failure Count"])
print(f"requests={n} rps={n / float(sys.argv[2]):.1f} failures={fails} p50_ms={row['50%']} p99_ms={row['99%']}")
PY
)
            l="$l $lc"
            l="$l us_per_req=$(calc "$(field cpu_s "$l") / $(field requests "$l") * 1e6")"
            echo "round $r locust (1 proc)    : $l"
            echo "part=cpu round=$r tool=locust $l" >> "$results"
        fi
    done
fi

# --- part fixed ---------------------------------------------------------------------------------
if want fixed || want memory; then
    "$build/tests/targets/latency_target" --port 0 > "$work/target.out" 2>&1 &
    target_pid=$!
    for _ in $(seq 50); do grep -q '^PORT=' "$work/target.out" && break; sleep 0.1; done
    tport=$(sed -n 's/^PORT=//p' "$work/target.out")
    [ -n "$tport" ] || { echo "latency_target did not start" >&2; exit 1; }
fi
if want fixed; then
    furl="http://127.0.0.1:$tport/fixed?ms=10"
    fusers=50; frate=20; fms=10; fthreads=2
    # The target's side: its answer is due 10 ms after the headers arrive; what a client adds is
    # loopback and parsing, measured here as the median round trip of /fixed?ms=0 over one
    # kept-alive connection from a plain python socket client (an independent third client).
    rtt=$(python3 - "$tport" <<'PY'
import socket, statistics, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = b"GET /fixed?ms=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
d = []
for i in range(300):
    t = time.perf_counter_ns()
    s.sendall(req)
    buf = b""
    while not (b"\r\n\r\n" in buf and buf.endswith(b"}")):
        buf += s.recv(4096)
    d.append((time.perf_counter_ns() - t) / 1e6)
    time.sleep(0.001)
print(f"{statistics.median(d[20:]):.3f}")
PY
)
    echo "fixed: target-side truth = $fms ms + loopback/parse ($rtt ms p50 for /fixed?ms=0 from a python socket client)"
    fspec="{\"target\":{\"url\":\"$furl\"},\"load\":{\"users\":$fusers,\"rate_per_user\":$frate,\"duration_s\":$fixed_secs,\"model\":\"open\",\"threads\":$fthreads}}"
    lt=$(timeout $((fixed_secs + 60)) "$work/bench_capacity" "$fspec" "$fthreads")
    echo "fixed loadtestd open model  : $lt"
    # wrk has no fixed rate (-R is wrk2's): each connection sends, waits for the answer, then
    # waits delay() ms; wrk's latency counts from the send, i.e. service time. Cycle per
    # connection = 1000 * users / total rate = 50 ms = 10 ms answer + 40 ms delay. The first
    # delay() of each connection staggers the connections over one cycle (1 ms apart) so that
    # they do not all send at once.
    period=$((1000 / frate))
    gap=$((period - fms))
    cat > "$work/paced.lua" <<LUA
local tid = 0
function setup(thread)
    thread:set("tid", tid)
    tid = tid + 1
end
local n = 0
function delay()
    n = n + 1
    if n <= $((fusers / fthreads)) then
        return math.floor(((n - 1) * $fthreads + tid) * $period / $fusers)
    end
    return $gap
end
LUA
    wc=$(cpu_of "$work/wrkfix.out" wrk -t"$fthreads" -c"$fusers" -d"${fixed_secs}s" --latency -s "$work/paced.lua" "$furl")
    w="$(wrk_parse "$work/wrkfix.out") $wc"
    echo "fixed wrk paced (delay $gap ms): $w"
    {
        echo "part=fixed tool=loadtestd rtt_ms=$rtt $lt"
        echo "part=fixed tool=wrk rtt_ms=$rtt $w"
    } >> "$results"
fi

# --- part memory --------------------------------------------------------------------------------
if want memory; then
    mkdir -p "$work/daemon"
    "$build/loadtestd" --listen 127.0.0.1:0 --db "$work/daemon/loadtestd.db" > "$work/daemon/log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 50); do grep -q 'event=listening' "$work/daemon/log" && break; sleep 0.1; done
    dport=$(sed -n 's/.*event=listening .*port=\([0-9]*\).*/\1/p' "$work/daemon/log")
    [ -n "$dport" ] || { echo "loadtestd did not start:" >&2; cat "$work/daemon/log" >&2; exit 1; }
    api="http://127.0.0.1:$dport/v1/runs"
    hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$daemon_pid/status"; }
    # the daemon's CPU seconds (utime+stime, every thread) from /proc/PID/stat
    dcpu() { python3 -c "import os; f=open('/proc/$daemon_pid/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"; }
    # the kernel's listen-queue overflows (machine-wide; a SYN dropped there is retried after 1 s,
    # 3 s, ...): non-zero means connections, not the engine, held requests up
    overflows() { awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print $c }' /proc/net/netstat; }
    # CPU seconds of nginx's processes and the machine's idle CPU seconds (/proc/stat), for context
    ncpu() { local t=0 p; for p in "$nginx_pid" $(pgrep -P "$nginx_pid"); do t=$(python3 -c "import os; f=open('/proc/$p/stat').read().rsplit(')', 1)[1].split(); print($t + (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"); done; echo "$t"; }
    idle() { python3 -c "import os; f=open('/proc/stat').readline().split(); print(int(f[4]) / os.sysconf('SC_CLK_TCK'))"; }
    idle_kb=$(hwm)
    cpu0=$(dcpu)
    ncpu0=$(ncpu)
    idle0=$(idle)
    t0=$(date +%s.%N)
    ovf0=$(overflows)
    mspec="{\"kind\":\"capacity\",\"name\":\"bench-memory\",\"target\":{\"url\":\"$url\"},\"load\":{\"users\":$mem_users,\"rate_per_user\":1,\"duration_s\":$mem_secs,\"model\":\"open\"}}"
    id=$(curl -sf -X POST -H 'Content-Type: application/json' -d "$mspec" "$api" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    status=queued
    for _ in $(seq $((mem_secs * 5 + 300))); do
        sleep 0.2
        status=$(curl -sf "$api/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        case $status in queued|running) ;; *) break ;; esac
    done
    peak_kb=$(hwm)
    cpu1=$(dcpu)
    ncpu1=$(ncpu)
    idle1=$(idle)
    t1=$(date +%s.%N)
    ovf1=$(overflows)
    cat > "$work/daemon/result.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
res = r["result"] or {}
lat = res.get("latency_ms", {})
print(f"status={r['status']} requests={res.get('requests')} rps={res.get('achieved_rps')} "
      f"late={res.get('late')} errors_by_class={','.join(f'{k}:{v}' for k, v in (res.get('errors') or {}).items())} late_waiting_for_connection={res.get('late_waiting_for_connection')} "
      f"max_send_lag_ms={res.get('max_send_lag_ms')} "
      f"p50_ms={lat.get('p50')} p99_ms={lat.get('p99')} errors={res.get('error_rate')} "
      f"peak_connections={res.get('peak_connections')} threads={res.get('threads')}")
PY
    m=$(curl -sf "$api/$id" | python3 "$work/daemon/result.py")
    # per second: requests/late (shows whether the engine kept to the schedule throughout)
    curl -sf "$api/$id/timeseries" > "$work/daemon/ts.json" || true
    python3 - "$work/daemon/ts.json" <<'PY' || true
import json, sys
ts = json.load(open(sys.argv[1]))
pts = ts.get("points", ts) if isinstance(ts, dict) else ts
print("memory per second (requests/late/p99 ms): " +
      " ".join(f"{p.get('requests')}/{p.get('late')}/{p.get('p99_ms')}" for p in pts))
PY
    m="users=$mem_users idle_hwm_kb=$idle_kb hwm_kb=$peak_kb daemon_cpu_s=$(calc "$cpu1 - $cpu0") listen_overflows=$((ovf1 - ovf0)) nginx_cpu_s=$(calc "$ncpu1 - $ncpu0") wall_s=$(calc "$t1 - $t0") machine_idle_cpu_s=$(calc "$idle1 - $idle0") $m"
    echo "memory loadtestd daemon     : $m"
    echo "part=memory tool=daemon $m" >> "$results"
fi

# --- summary ------------------------------------------------------------------------------------
python3 - "$results" "$secs" "$conns" "$fixed_secs" "$mem_secs" <<'PY'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    rows.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))
secs, conns, fsecs, msecs = sys.argv[2:]
f = lambda x: float(x)
print()
print("=" * 100)
cpu = [r for r in rows if r["part"] == "cpu"]
if cpu:
    tools = [t for t in ("fast", "libcurl", "wrk", "locust") if any(r["tool"] == t for r in cpu)]
    name = {"fast": "loadtestd fast-http1", "libcurl": "loadtestd libcurl", "wrk": "wrk -t2", "locust": "Locust (1 process)"}
    print(f"Saturating nginx, {conns} connections/users, {secs} s per tool per round "
          "(req/CPU-s = requests / (user+sys) of the process tree)")
    print(f"| round | {'tool':<22} | {'req/s':>9} | {'CPU s':>6} | {'us/req':>7} | {'req/CPU-s':>9} | {'fast/this':>9} | {'libcurl/this':>12} |")
    print("|-------|------------------------|-----------|--------|---------|-----------|-----------|--------------|")
    rounds = sorted({int(r["round"]) for r in cpu})
    per = {}
    for rd in rounds:
        byt = {r["tool"]: r for r in cpu if int(r["round"]) == rd}
        for t in tools:
            r = byt.get(t)
            if r is None:
                continue
            rpc = f(r["requests"]) / f(r["cpu_s"])
            per.setdefault(t, []).append(rpc)
            fr = (f(byt["fast"]["requests"]) / f(byt["fast"]["cpu_s"]) / rpc) if "fast" in byt else float("nan")
            cr = (f(byt["libcurl"]["requests"]) / f(byt["libcurl"]["cpu_s"]) / rpc) if "libcurl" in byt else float("nan")
            print(f"| {rd:>5} | {name[t]:<22} | {f(r['rps']):>9.0f} | {f(r['cpu_s']):>6.2f} | {f(r['us_per_req']):>7.1f} | {rpc:>9.0f} | {fr:>9.2f} | {cr:>12.2f} |")
    print("mean requests per CPU-second: " + ", ".join(f"{name[t]} {statistics.mean(v):.0f}" for t, v in per.items()))
    m = {t: statistics.mean(v) for t, v in per.items()}
    if "wrk" in m and "fast" in m:
        print(f"  loadtestd/wrk    fast-http1 {m['fast'] / m['wrk']:.2f}, libcurl {m.get('libcurl', float('nan')) / m['wrk']:.2f}   (goal >= 0.8)")
    if "locust" in m and "fast" in m:
        print(f"  loadtestd/Locust fast-http1 {m['fast'] / m['locust']:.1f}x, libcurl {m.get('libcurl', float('nan')) / m['locust']:.1f}x   (goal >= 10x)")
    st = [r for r in rows if r["part"] == "locust_startup"]
    if st:
        print(f"  (Locust's CPU includes its start-up; importing locust alone costs {f(st[0]['cpu_s']):.2f} CPU-s)")
fx = {r["tool"]: r for r in rows if r["part"] == "fixed"}
if fx:
    lt, w = fx["loadtestd"], fx["wrk"]
    print()
    print(f"Fixed rate, 1,000 req/s (50 x 20/s) for {fsecs} s at /fixed?ms=10; target truth = 10 ms + {f(lt['rtt_ms']):.3f} ms (loopback+parse)")
    print(f"| {'figure':<36} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | {'p50 - wrk':>9} | {'p99 - wrk':>9} |")
    print("|--------------------------------------|---------|---------|---------|-----------|-----------|")
    wp50, wp99 = f(w["p50_ms"]), f(w["p99_ms"])
    for label, p50, p99, rps in (("loadtestd service time (from send)", lt["st_p50_ms"], lt["st_p99_ms"], lt["rps"]),
                                 ("loadtestd latency (from due)", lt["p50_ms"], lt["p99_ms"], lt["rps"]),
                                 ("wrk paced, --latency (from send)", w["p50_ms"], w["p99_ms"], w["rps"])):
        print(f"| {label:<36} | {f(rps):>7.0f} | {f(p50):>7.3f} | {f(p99):>7.3f} | {f(p50) - wp50:>+9.3f} | {f(p99) - wp99:>+9.3f} |")
    print(f"  loadtestd late={lt['late']} max_send_lag_ms={lt['max_send_lag_ms']} peak_connections={lt['peak_connections']}; "
          f"goal |p50 diff| <= 0.3 ms, |p99 diff| <= 1 ms")
mem = [r for r in rows if r["part"] == "memory"]
if mem:
    r = mem[0]
    print()
    print(f"Memory: {int(r['users']):,} open-model users x 1 req/s for {msecs} s at nginx, one loadtestd daemon via REST")
    print(f"  peak RSS (VmHWM) {f(r['hwm_kb']) / 1024:.1f} MiB (idle daemon before the run {f(r['idle_hwm_kb']) / 1024:.1f} MiB); goal < 256 MB")
    print(f"  status={r['status']} achieved {r['rps']} req/s, late={r['late']}, max_send_lag_ms={r['max_send_lag_ms']}, "
          f"late_waiting_for_connection={r['late_waiting_for_connection']}, "
          f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}, peak_connections={r['peak_connections']}")
    print(f"  kernel listen-queue overflows during the run (machine-wide): {r['listen_overflows']}")
    print(f"  daemon CPU during the run {f(r['daemon_cpu_s']):.2f} s = {f(r['daemon_cpu_s']) / f(r['requests']) * 1e6:.1f} us/request; "
          f"nginx {f(r['nginx_cpu_s']):.2f} s; machine idle {f(r['machine_idle_cpu_s']):.1f} of {f(r['wall_s']) * (__import__('os').cpu_count() or 1):.1f} CPU-s ({r['wall_s']} s wall)")
PY
