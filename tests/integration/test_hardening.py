"""Black-box tests of the operator's guards: per-run caps (403 limit_exceeded naming the field,
the limit and the flag; GET /v1/limits), the API's own request rate limit (429 rate_limited with
Retry-After, per token, per address without tokens, /healthz never limited) and SIGHUP reloads
of the token file and the target allowlist (a broken file keeps what was in force; a running run
keeps the allowlist it started with). Every target is on 127.0.0.1; runs aimed at ports where
nothing listens end with connect errors, which is all these tests need."""

import os
import signal
import tempfile
import time

import ltd

ARGS = ltd.parse_args()
OLD = "old-write-token-0123456789"
NEW = "new-write-token-9876543210"
OTHER = "other-write-token-abcdef012"

CAPS = ["--max-users", "5", "--max-total-rps", "20", "--max-duration-s", "10",
        "--max-burst-requests", "300", "--max-agents", "2", "--max-rows", "1000",
        "--max-generate-connections", "2"]


free_port = ltd.free_port


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # the daemon never reads a half-written file


def capacity(port, users=1, rate=1, duration=1, warmup=0, model="open", path="/"):
    return {"kind": "capacity", "target": {"url": "http://127.0.0.1:%d%s" % (port, path)},
            "load": {"users": users, "rate_per_user": rate, "duration_s": duration,
                     "warmup_s": warmup, "model": model}}


def ratelimit(port, max_requests=200, agents=0, windows=1, window_s=1):
    return {"kind": "ratelimit", "target": {"url": "http://127.0.0.1:%d/" % port},
            "burst": {"expect_limit": 10, "max_requests": max_requests},
            "realistic": {"agents": agents, "windows": windows, "window_s": window_s}}


def generate(rows=10, connections=1):
    return {"kind": "generate", "database": {"dsn": "postgresql://u:secret@127.0.0.1:1/db"},
            "rows": rows, "dim": 4, "connections": connections, "index": {"build": "none"}}


def expect_limit(d, spec, field, *words):
    a = d.post("/v1/runs", spec)
    assert a.status == 403, a
    e = a.json["error"]
    assert e["code"] == "limit_exceeded" and e["field"] == field, a
    for w in words:
        assert w in e["message"], (w, a)


def expect_accepted(d, spec, ids):
    a = d.post("/v1/runs", spec)
    assert a.status == 202, a
    ids.append(a.json["id"])


def cancel_all(d, ids):
    for run_id in ids:
        d.post("/v1/runs/%s/cancel" % run_id)
    for run_id in ids:
        d.wait_status(run_id, ("passed", "failed", "error", "cancelled"), timeout=60)


def test_caps():
    port = free_port()
    d = ltd.Daemon(ARGS, extra=CAPS + ["--max-concurrent-runs", "1"])
    ids = []
    try:
        lim = d.get("/v1/limits").json
        assert lim["capacity"] == {"max_users": 5, "max_total_rps": 20, "max_duration_s": 10}, lim
        assert lim["ratelimit"] == {"max_burst_requests": 300, "max_agents": 2,
                                    "max_duration_s": 10}, lim
        assert lim["generate"] == {"max_rows": 1000, "max_connections": 2}, lim
        assert lim["api"] == {"rate_per_s": None, "burst": None}, lim  # harness: --api-rate 0

        # capacity: users, users x rate (open and closed), warm-up + duration
        expect_limit(d, capacity(port, users=6), "/load/users", "load.users = 6", "--max-users 5")
        expect_limit(d, capacity(port, users=5, rate=5), "/load/rate_per_user",
                     "25 req/s", "--max-total-rps 20")
        expect_limit(d, capacity(port, users=5, rate=4.5, model="closed"),
                     "/load/rate_per_user", "22.5 req/s", "--max-total-rps 20")
        expect_limit(d, capacity(port, duration=11), "/load/duration_s", "11 s",
                     "--max-duration-s 10")
        expect_limit(d, capacity(port, duration=8, warmup=3), "/load/duration_s",
                     "load.warmup_s + load.duration_s = 11 s")
        # ratelimit: burst, agents, realistic time
        expect_limit(d, ratelimit(port, max_requests=301), "/burst/max_requests",
                     "= 301", "--max-burst-requests 300")
        expect_limit(d, ratelimit(port, agents=3), "/realistic/agents", "--max-agents 2")
        expect_limit(d, ratelimit(port, agents=1, windows=2, window_s=6), "/realistic/windows",
                     "= 12 s", "--max-duration-s 10")
        # generate: rows, connections
        expect_limit(d, generate(rows=1001), "/rows", "rows = 1001", "--max-rows 1000")
        expect_limit(d, generate(connections=3), "/connections", "--max-generate-connections 2")
        # a defaulted field counts too: burst.max_requests defaults to 2 x (expect_limit +
        # tolerance), at least 200
        spec = ratelimit(port)
        spec["burst"] = {"expect_limit": 200}
        expect_limit(d, spec, "/burst/max_requests", "= 404")
        # a cap does not hide a validation error: validation comes first
        a = d.post("/v1/runs", capacity(port, users=0))
        assert a.status == 400 and a.json["error"]["code"] == "invalid_spec", a
        # nothing refused was stored
        assert d.get("/v1/runs").json["runs"] == []

        # just at every limit: accepted
        expect_accepted(d, capacity(port, users=5, rate=4, duration=10), ids)
        expect_accepted(d, capacity(port, users=5, rate=4, duration=7, warmup=3, model="closed"),
                        ids)
        expect_accepted(d, ratelimit(port, max_requests=300, agents=2, windows=2, window_s=5), ids)
        expect_accepted(d, generate(rows=1000, connections=2), ids)
        assert len(d.get("/v1/runs").json["runs"]) == 4
    finally:
        try:
            cancel_all(d, ids)
        finally:
            d.stop()


def test_default_caps():
    d = ltd.Daemon(ARGS)
    try:
        lim = d.get("/v1/limits").json
        assert lim["capacity"] == {"max_users": 10000, "max_total_rps": 100000,
                                   "max_duration_s": 3600}, lim
        assert lim["generate"] == {"max_rows": 100000000, "max_connections": 16}, lim
        expect_limit(d, capacity(free_port(), users=10001), "/load/users", "--max-users 10000")
        expect_limit(d, capacity(free_port(), users=1000, rate=101), "/load/rate_per_user",
                     "101000 req/s", "--max-total-rps 100000")
        a = d.get("/v1/limits?x=1")
        assert a.status == 400 and a.json["error"]["field"] == "x", a
    finally:
        d.stop()
    d = ltd.Daemon(ARGS, extra=["--api-rate", "50"])
    try:
        assert d.get("/v1/limits").json["api"] == {"rate_per_s": 50, "burst": 200}
    finally:
        d.stop()


def first_429(d, path, headers, n):
    """Sends up to n GETs; returns (answers before the first 429, that 429 or None)."""
    ok = 0
    for _ in range(n):
        a = d.get(path, headers=headers)
        if a.status == 429:
            return ok, a
        ok += 1
    return ok, None


def check_429(a):
    assert a is not None, "no 429"
    assert a.json["error"]["code"] == "rate_limited", a
    ra = a.header("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, a
    return int(ra)


def test_api_rate_limit_per_token():
    fd, path = tempfile.mkstemp(prefix="ltd-tokens-")
    os.close(fd)
    write_file(path, "write %s\nwrite %s\n" % (OLD, OTHER))
    d = ltd.Daemon(ARGS, extra=["--token-file", path, "--api-rate", "1", "--api-burst", "5"])
    try:
        a_hdr = {"Authorization": "Bearer " + OLD}
        b_hdr = {"Authorization": "Bearer " + OTHER}
        # The bucket starts full: the first 5 pass whatever the timing; at 1 refill/s a 429
        # must come within the next 20.
        ok, a = first_429(d, "/v1/version", a_hdr, 25)
        assert ok >= 5, ok
        ra = check_429(a)
        # another token has its own bucket
        assert d.get("/v1/version", headers=b_hdr).status == 200
        # /healthz is never limited
        for _ in range(30):
            assert d.get("/healthz").status == 200
        # a POST is limited like the rest, before its body is looked at
        a = d.post("/v1/runs", {"kind": "nonsense"}, headers=a_hdr)
        assert a.status == 429, a
        # guessing tokens is limited per address
        ok, a = first_429(d, "/v1/runs", {"Authorization": "Bearer wrong-000000000000000"}, 25)
        assert ok >= 5, ok
        check_429(a)
        # after Retry-After the token is served again
        time.sleep(ra + 0.2)
        assert d.get("/v1/version", headers=a_hdr).status == 200
    finally:
        d.stop()
        os.unlink(path)
    log = d.log_text()
    assert OLD not in log and OTHER not in log


def test_long_poll_is_charged_once():
    """A long-poll (?wait=) held until its deadline is resumed and handled again: it must cost
    one request, not one per resumption. The poll is on a queued run (behind a long one, with
    --max-concurrent-runs 1): its document does not change, so the poll is held its whole wait
    (a finished run's poll would answer at once)."""
    fd, path = tempfile.mkstemp(prefix="ltd-tokens-")
    os.close(fd)
    write_file(path, "write %s\nread %s\n" % (OLD, OTHER))
    d = ltd.Daemon(ARGS, extra=["--token-file", path, "--api-rate", "1", "--api-burst", "2",
                                "--max-concurrent-runs", "1"])
    try:
        setup = {"Authorization": "Bearer " + OLD}
        blocker = d.post("/v1/runs", capacity(free_port(), duration=60), headers=setup)
        assert blocker.status == 202, blocker
        time.sleep(1.1)  # the setup token's bucket refills between its requests
        a = d.post("/v1/runs", capacity(free_port()), headers=setup)
        assert a.status == 202 and a.json["status"] == "queued", a
        run_id = a.json["id"]
        time.sleep(1.1)
        a = d.get("/v1/runs/" + run_id, headers=setup)
        assert a.status == 200 and a.json["status"] == "queued", a
        etag = a.header("ETag")
        # The other token's bucket is full (2). The long-poll takes 1 and is held for 2 s while
        # the bucket refills to 2; charged again on resumption it would leave 1.
        hdr = {"Authorization": "Bearer " + OTHER, "If-None-Match": etag}
        t0 = time.time()
        a = d.get("/v1/runs/%s?wait=2" % run_id, headers=hdr)
        assert a.status == 304 and time.time() - t0 >= 1.9, (a, time.time() - t0)
        hdr = {"Authorization": "Bearer " + OTHER}
        assert d.get("/v1/version", headers=hdr).status == 200
        assert d.get("/v1/version", headers=hdr).status == 200
        time.sleep(1.1)
        d.post("/v1/runs/%s/cancel" % blocker.json["id"], headers=setup)
    finally:
        d.stop()
        os.unlink(path)


def test_api_rate_limit_without_tokens():
    d = ltd.Daemon(ARGS, extra=["--api-rate", "1", "--api-burst", "3"])
    try:
        ok, a = first_429(d, "/v1/runs", None, 25)
        assert ok >= 3, ok
        check_429(a)
        assert d.get("/healthz").status == 200
    finally:
        d.stop()


def wait_log(d, needle, count, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if d.log_text().count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("no %d x %r in the log:\n%s" % (count, needle, d.log_text()[-2000:]))


def test_sighup_reloads_tokens():
    fd, path = tempfile.mkstemp(prefix="ltd-tokens-")
    os.close(fd)
    write_file(path, "write %s\n" % OLD)
    d = ltd.Daemon(ARGS, extra=["--token-file", path])
    old_hdr = {"Authorization": "Bearer " + OLD}
    new_hdr = {"Authorization": "Bearer " + NEW}
    try:
        assert d.get("/v1/runs", headers=old_hdr).status == 200
        assert d.get("/v1/runs", headers=new_hdr).status == 401
        write_file(path, "# rotated\nwrite %s\nread %s\n" % (NEW, OTHER))
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 1)
        assert "event=reload tokens=2 allow=3" in d.log_text(), d.log_text()[-1000:]
        assert d.get("/v1/runs", headers=old_hdr).status == 401
        assert d.get("/v1/runs", headers=new_hdr).status == 200
        a = d.post("/v1/runs", {}, headers={"Authorization": "Bearer " + OTHER})
        assert a.status == 403 and a.json["error"]["code"] == "forbidden", a
        # a broken file keeps the tokens in force
        write_file(path, "write short\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 2)
        assert d.get("/v1/runs", headers=new_hdr).status == 200
        assert d.get("/v1/runs", headers=old_hdr).status == 401
        # so does a missing one
        os.unlink(path)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 3)
        assert d.get("/v1/runs", headers=new_hdr).status == 200
        log = d.log_text()
        assert log.count("event=reload_failed what=tokens") == 2, log[-2000:]
        assert "kept_old=tokens" in log
        # the daemon kept serving and still stops cleanly
        assert d.get("/healthz").status == 200
    finally:
        rc, _ = d.stop()
        if os.path.exists(path):
            os.unlink(path)
    assert rc == 0
    log = d.log_text()
    for t in (OLD, NEW, OTHER, "short"):
        assert t not in log, "a token appeared in the log: " + t


def test_sighup_reloads_allowlist():
    p1, p2 = free_port(), free_port()
    fd, path = tempfile.mkstemp(prefix="ltd-allow-")
    os.close(fd)
    write_file(path, "# only the first\n127.0.0.1:%d\n" % p1)
    d = ltd.Daemon(ARGS, extra=["--allow-target-file", path, "--max-concurrent-runs", "1"])
    ids = []
    try:
        expect_accepted(d, capacity(p1), ids)
        a = d.post("/v1/runs", capacity(p2))
        assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
        assert a.json["error"]["field"] == "/target/url", a
        write_file(path, "127.0.0.1:%d, 127.0.0.1:%d  # both\n" % (p1, p2))
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 1)
        assert "event=reload tokens=0 allow=2" in d.log_text()
        expect_accepted(d, capacity(p2), ids)
        # a malformed list keeps the one in force
        write_file(path, "127.0.0.1:%d\nnot a valid entry!\n" % p1)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 2)
        assert "what=allowlist" in d.log_text() and "kept_old=allowlist" in d.log_text()
        expect_accepted(d, capacity(p2), ids)
        # the file's entries replace the loopback default rather than adding to it
        a = d.post("/v1/runs", capacity(free_port()))
        assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
    finally:
        try:
            cancel_all(d, ids)
        finally:
            d.stop()
            os.unlink(path)


def test_bad_allowlist_file_refused_at_start():
    import subprocess
    fd, path = tempfile.mkstemp(prefix="ltd-allow-")
    with os.fdopen(fd, "w") as f:
        f.write("127.0.0.1:80\n\n10.0.0.0/99\n")
    try:
        for extra, why in ((["--allow-target-file", path], path + ":3: bad allowlist entry"),
                           (["--allow-target-file", "/nonexistent/allow"], "cannot open"),
                           (["--allow-target", "127.0.0.1:0"], "--allow-target:1: bad")):
            out = subprocess.run([ARGS.loadtestd, "--listen", "127.0.0.1:0", "--db",
                                  os.path.join(tempfile.gettempdir(), "never-opened.db")] + extra,
                                 capture_output=True, text=True, timeout=10)
            assert out.returncode == 2 and why in out.stderr, (extra, out)
    finally:
        os.unlink(path)


def test_running_run_keeps_its_allowlist():
    """A run opening a new connection per request (/close) goes on using the allowlist it started
    with after a reload removed its target; a new run to that target is refused."""
    t = ltd.Target(ARGS, "latency_target")
    fd, path = tempfile.mkstemp(prefix="ltd-allow-")
    os.close(fd)
    write_file(path, "127.0.0.1:%d\n" % t.port)
    d = ltd.Daemon(ARGS, extra=["--allow-target-file", path])
    try:
        a = d.post("/v1/runs", capacity(t.port, users=2, rate=20, duration=4, path="/close"))
        assert a.status == 202, a
        run_id = a.json["id"]
        d.wait_status(run_id, ("running",))
        time.sleep(1)
        write_file(path, "127.0.0.1:%d\n" % free_port())
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "event=reload ", 1)
        a = d.post("/v1/runs", capacity(t.port))
        assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
        doc = d.wait_status(run_id, ("passed", "failed", "error", "cancelled"), timeout=60)
        res = doc["result"]
        assert doc["status"] in ("passed", "failed"), doc
        assert res["forbidden_by_allowlist"] == 0, res
        assert res["errors"]["connect"] == 0, res
        assert res["status_codes"].get("200", 0) >= 40, res
    finally:
        d.stop()
        t.stop()
        os.unlink(path)


if __name__ == "__main__":
    raise SystemExit(ltd.run_tests([
        test_caps,
        test_default_caps,
        test_api_rate_limit_per_token,
        test_api_rate_limit_without_tokens,
        test_long_poll_is_charged_once,
        test_sighup_reloads_tokens,
        test_sighup_reloads_allowlist,
        test_bad_allowlist_file_refused_at_start,
        test_running_run_keeps_its_allowlist,
    ]))
