"""Black-box tests of long-polls (?wait=N on GET /v1/runs/{id} and its /timeseries): validation
of wait, an immediate answer when the client's ETag is stale, an answer soon after the run
changes (a queued run cancelled from another connection), 304 when the wait expires, many held
requests with a tiny HTTP thread pool while other requests are still answered (held requests
occupy no thread), and SIGTERM with held requests (exit 0 within 5 s)."""

import http.client
import select
import signal
import socket
import sys
import threading
import time

import ltd

ARGS = ltd.parse_args()


def spec(target, duration=2, users=2, rate=10, name="longpoll"):
    return {"kind": "capacity", "name": name, "target": {"url": target.base + "/fixed?ms=2"},
            "load": {"users": users, "rate_per_user": rate, "duration_s": duration},
            "thresholds": {"p99_ms": 10000}}


def fetch(d, path, headers=None, timeout=90):
    """One GET on its own connection (safe from any thread), validated against the spec.
    Returns (Answer, seconds it took)."""
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        a = ltd.Answer(r.status, r.getheaders(), r.read())
    finally:
        c.close()
    ltd.openapi(ARGS.source).validate("GET", path.split("?")[0], a.status, dict(a.headers), a.raw)
    return a, time.time() - t0


def queued_run(d, t):
    """A run that stays queued behind a 10-minute run (the daemon must have
    --max-concurrent-runs 1): its document does not change, so a long-poll on its ETag is held
    for its whole wait. (A finished run's long-poll answers 304 at once: it cannot change.)"""
    a = d.post("/v1/runs", spec(t, duration=600, users=1, rate=1, name="blocker"))
    assert a.status == 202, a
    d.wait_status(a.json["id"], {"running"})
    b = d.post("/v1/runs", spec(t, duration=1))
    assert b.status == 202 and b.json["status"] == "queued", b
    return b.json["id"], d.get("/v1/runs/" + b.json["id"]).header("ETag")


def finished_run(d, t):
    a = d.post("/v1/runs", spec(t, duration=1))
    assert a.status == 202, a
    doc = d.wait_status(a.json["id"], {"passed", "failed", "error"}, timeout=60)
    assert doc["status"] in ("passed", "failed"), doc  # the verdict does not matter here
    return doc["id"], d.get("/v1/runs/" + doc["id"]).header("ETag")


def test_wait_is_validated():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS)
    try:
        rid, _ = finished_run(d, t)
        for bad in ("0", "61", "-1", "abc", "1.5", ""):
            for path in ("/v1/runs/%s?wait=%s", "/v1/runs/%s/timeseries?wait=%s"):
                a = d.get(path % (rid, bad))
                assert a.status == 400, (path, bad, a)
                assert a.json["error"]["field"] == "wait", a
        assert d.get("/v1/runs/%s?wait=60" % rid).status == 200
    finally:
        d.stop()
        t.stop()


def test_stale_etag_answers_at_once_and_finished_run_gets_304_at_once():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS)
    try:
        rid, etag = finished_run(d, t)
        # News (the client's tag is stale): answered at once although wait=30.
        a, took = fetch(d, "/v1/runs/%s?wait=30" % rid, {"If-None-Match": '"stale"'})
        assert a.status == 200 and a.json["id"] == rid and a.header("ETag") == etag, a
        assert took < 10, "a stale ETag was held for %.1fs" % took
        # No If-None-Match at all: also news.
        a, took = fetch(d, "/v1/runs/%s?wait=30" % rid)
        assert a.status == 200 and took < 10, (a, took)
        # Nothing can change on a finished run: 304 at once, not after the wait.
        a, took = fetch(d, "/v1/runs/%s?wait=30" % rid, {"If-None-Match": etag})
        assert a.status == 304 and a.raw == b"", a
        assert took < 10, "a finished run's long-poll was held for %.1fs" % took
        # Timeseries of a finished run with nothing after since: at once (it will not grow).
        a, took = fetch(d, "/v1/runs/%s/timeseries?since=1000&wait=30" % rid)
        assert a.status == 200 and a.json["points"] == [] and took < 10, (a, took)
        # ... and with its own matching ETag: 304 at once too (its series cannot grow).
        ts_tag = d.get("/v1/runs/%s/timeseries?since=0" % rid).header("ETag")
        a, took = fetch(d, "/v1/runs/%s/timeseries?since=0&wait=30" % rid,
                        {"If-None-Match": ts_tag})
        assert a.status == 304 and a.raw == b"", a
        assert took < 10, "a finished run's timeseries long-poll was held for %.1fs" % took
    finally:
        d.stop()
        t.stop()


def test_answers_soon_after_the_run_changes():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1"])
    try:
        busy = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        d.wait_status(busy, {"running"})
        # A queued run: its document does not change until something happens to it.
        q = d.post("/v1/runs", spec(t, duration=60))
        assert q.status == 202 and q.json["status"] == "queued", q
        qid, qtag = q.json["id"], q.header("ETag")
        assert d.get("/v1/runs/" + qid, headers={"If-None-Match": qtag}).status == 304

        out = {}

        def poll():
            out["answer"], _ = fetch(d, "/v1/runs/%s?wait=30" % qid, {"If-None-Match": qtag})
            out["at"] = time.time()

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(1.5)
        assert "answer" not in out, "answered before anything changed: %r" % out.get("answer")
        cancelled_at = time.time()
        a = d.post("/v1/runs/%s/cancel" % qid)
        assert a.status == 202, a
        th.join(35)
        assert not th.is_alive(), "the long-poll never answered"
        ans = out["answer"]
        assert ans.status == 200 and ans.json["status"] == "cancelled", ans
        assert ans.header("ETag") != qtag
        delay = out["at"] - cancelled_at
        assert delay < 3, "answered %.2fs after the cancel" % delay

        # A running run changes every second (progress): a long-poll on it gets the newer
        # document well before its wait ends, and a timeseries long-poll past the last point
        # gets the next second's point.
        tag = d.get("/v1/runs/" + busy).header("ETag")
        a, took = fetch(d, "/v1/runs/%s?wait=30" % busy, {"If-None-Match": tag})
        assert a.status == 200 and a.header("ETag") != tag and took < 15, (a, took)
        pts = d.get("/v1/runs/%s/timeseries" % busy).json["points"]
        last = max([p["t"] for p in pts] or [0])
        a, took = fetch(d, "/v1/runs/%s/timeseries?since=%d&wait=30" % (busy, last))
        assert a.status == 200 and a.json["points"], (a, took)
        assert all(p["t"] > last for p in a.json["points"]) and took < 15, (a, took)
        d.post("/v1/runs/%s/cancel" % busy)
    finally:
        d.stop()
        t.stop()


def held_gauge(d):
    for line in d.get("/metrics").raw.decode().splitlines():
        if line.startswith("loadtestd_longpoll_held "):
            return int(float(line.split()[1]))
    raise AssertionError("no loadtestd_longpoll_held in /metrics")


def test_many_held_requests_leave_the_threads_free():
    n = 50
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--http-threads", "2", "--max-concurrent-runs", "1"])
    try:
        rid, etag = queued_run(d, t)
        results = []
        lock = threading.Lock()

        def poll():
            try:
                a, took = fetch(d, "/v1/runs/%s?wait=10" % rid, {"If-None-Match": etag})
                item = (a.status, time.time(), took)
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                item = (repr(e), time.time(), 0)
            with lock:
                results.append(item)

        threads = [threading.Thread(target=poll) for _ in range(n)]
        for th in threads:
            th.start()
        deadline = time.time() + 8
        while held_gauge(d) < n and time.time() < deadline:
            time.sleep(0.05)
        held = held_gauge(d)
        assert held == n, "only %d of %d long-polls held" % (held, n)
        # With 2 HTTP threads and 50 requests held, other requests are still answered: a held
        # request occupies no thread.
        others_done = None
        for i in range(20):
            a, _ = fetch(d, "/healthz" if i % 2 else "/v1/runs/" + rid, timeout=30)
            assert a.status == 200, a
        others_done = time.time()
        for th in threads:
            th.join(40)
        assert not any(th.is_alive() for th in threads), "some long-polls never answered"
        assert len(results) == n and all(s == 304 for s, _, _ in results), results
        # Each was held for its whole wait (nothing changed), not answered early.
        assert all(took >= 9.5 for _, _, took in results), sorted(r[2] for r in results)
        first_answer = min(at for _, at, _ in results)
        assert others_done < first_answer, \
            "other requests waited for the long-polls (%.2fs after the first answer)" % (
                others_done - first_answer)
        assert held_gauge(d) == 0
    finally:
        d.stop()
        t.stop()


def read_status(sock, timeout):
    """The status code of the answer on sock, or None when none arrives within timeout."""
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return None
    data = sock.recv(4096)
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else data


def test_cap_on_held_requests():
    # HTTP_HOLD_MAX (service/http.h) is 512: the requests past it answer at once (304 here).
    cap, extra = 512, 8
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--http-threads", "2", "--max-concurrent-runs", "1"])
    socks = []
    try:
        rid, etag = queued_run(d, t)
        request = ("GET /v1/runs/%s?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "If-None-Match: %s\r\n\r\n" % (rid, etag)).encode()
        for _ in range(cap):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(request)
            socks.append(s)
        deadline = time.time() + 20
        while held_gauge(d) < cap and time.time() < deadline:
            time.sleep(0.1)
        assert held_gauge(d) == cap, held_gauge(d)
        for _ in range(extra):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(request)
            assert read_status(s, 10) == 304, "a request past the cap was not answered at once"
            s.close()
        assert held_gauge(d) == cap
        # None of the held ones has answered.
        assert all(read_status(s, 0) is None for s in socks)
        rc, took = d.stop(signal.SIGTERM)
        assert rc == 0 and took < 5, (rc, took)
        answered = sum(1 for s in socks if read_status(s, 5) == 304)
        assert answered == cap, "%d of %d held requests answered at shutdown" % (answered, cap)
    finally:
        for s in socks:
            s.close()
        d.kill()
        t.stop()


def test_sigterm_with_held_requests():
    n = 20
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--http-threads", "2", "--max-concurrent-runs", "1"])
    try:
        rid, etag = queued_run(d, t)
        results = []
        lock = threading.Lock()

        def poll():
            t0 = time.time()
            try:
                a, _ = fetch(d, "/v1/runs/%s?wait=60" % rid, {"If-None-Match": etag}, timeout=30)
                item = a.status
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                item = repr(e)
            with lock:
                results.append((item, time.time() - t0))

        threads = [threading.Thread(target=poll) for _ in range(n)]
        for th in threads:
            th.start()
        deadline = time.time() + 8
        while held_gauge(d) < n and time.time() < deadline:
            time.sleep(0.05)
        assert held_gauge(d) == n
        time.sleep(1)
        assert len(results) == 0, "answered before the signal: %r" % results
        rc, took = d.stop(signal.SIGTERM)
        assert rc == 0, "exit code %d" % rc
        assert took < 5, "took %.2fs to exit with long-polls held" % took
        for th in threads:
            th.join(10)
        assert not any(th.is_alive() for th in threads)
        # Each held request was answered (304: nothing changed) before the daemon exited.
        assert len(results) == n and all(s == 304 for s, _ in results), results
        assert "unfinished_long_polls" not in d.log_text()
    finally:
        d.kill()
        t.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_wait_is_validated,
                            test_stale_etag_answers_at_once_and_finished_run_gets_304_at_once,
                            test_answers_soon_after_the_run_changes,
                            test_many_held_requests_leave_the_threads_free,
                            test_cap_on_held_requests,
                            test_sigterm_with_held_requests]))
