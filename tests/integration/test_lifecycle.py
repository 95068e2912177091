"""Black-box tests of the run lifecycle through the real daemon and a real HTTP target:
queued -> running -> passed, ETag/304, time series, listing with filters and cursors, the bounded
queue (429), cancel and delete, SIGTERM (runs end cancelled, partial results kept, exit 0 within
5 s) and SIGKILL (runs found interrupted at the next start, with what they had stored)."""

import signal
import sys
import time

import ltd

ARGS = ltd.parse_args()


def spec(target, path="/fixed?ms=2", duration=2, users=2, rate=10, name="lifecycle", **extra):
    s = {"kind": "capacity", "name": name,
         "target": {"url": target.base + path},
         "load": {"users": users, "rate_per_user": rate, "duration_s": duration},
         "thresholds": {"p99_ms": 500}}
    s.update(extra)
    return s


def count_points(d, run_id, since=0):
    return len(d.get("/v1/runs/%s/timeseries?since=%d" % (run_id, since)).json["points"])


def test_run_to_verdict_etag_and_series():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS)
    try:
        a = d.post("/v1/runs", spec(t, duration=3))
        assert a.status == 202, a
        doc = a.json
        assert doc["status"] == "queued" and doc["verdict"] is None and doc["started_at"] is None
        assert a.header("Location") == "/v1/runs/" + doc["id"]
        # Defaults are filled in the stored spec.
        assert doc["spec"]["load"]["model"] == "open" and doc["spec"]["load"]["warmup_s"] == 0
        doc = d.wait_status(doc["id"], {"passed", "failed", "error"}, timeout=30)
        assert doc["status"] == "passed", doc
        assert doc["verdict"]["pass"] is True and doc["verdict"]["checks"][0]["name"] == "p99_ms"
        res = doc["result"]
        assert abs(res["requests"] - 60) <= 2, res
        assert res["latency_ms"]["p50"] >= 2.0, res
        assert doc["started_at"] and doc["finished_at"] and doc["progress"]["fraction"] == 1.0
        # ETag and 304.
        a = d.get("/v1/runs/" + doc["id"])
        etag = a.header("ETag")
        assert etag, a
        b = d.get("/v1/runs/" + doc["id"], headers={"If-None-Match": etag})
        assert b.status == 304 and b.raw == b"", b
        c = d.get("/v1/runs/" + doc["id"], headers={"If-None-Match": '"other"'})
        assert c.status == 200
        # One point per second, filtered by since.
        pts = d.get("/v1/runs/%s/timeseries" % doc["id"]).json["points"]
        assert 3 <= len(pts) <= 4, pts
        assert [p["t"] for p in pts] == sorted(p["t"] for p in pts)
        assert all("requests" in p and "p99_ms" in p and "status" in p for p in pts), pts
        assert sum(p["requests"] for p in pts) >= 55, pts
        assert count_points(d, doc["id"], since=2) == len([p for p in pts if p["t"] > 2])
        ts = d.get("/v1/runs/%s/timeseries" % doc["id"])
        assert d.get("/v1/runs/%s/timeseries" % doc["id"],
                     headers={"If-None-Match": ts.header("ETag")}).status == 304
    finally:
        d.stop()
        t.stop()


def test_listing_filters_and_cursor():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "4", "--max-queued-runs", "10"])
    try:
        ids = []
        for i in range(5):
            a = d.post("/v1/runs", spec(t, duration=1, users=1, rate=5,
                                       name="even" if i % 2 == 0 else "odd"))
            assert a.status == 202, a
            ids.append(a.json["id"])
        for i in ids:
            d.wait_status(i, {"passed"}, timeout=30)
        runs = d.get("/v1/runs").json
        assert [r["id"] for r in runs["runs"]] == ids[::-1], runs
        assert runs["next_cursor"] is None
        assert "spec" not in runs["runs"][0] and runs["runs"][0]["verdict"]["pass"] is True
        page1 = d.get("/v1/runs?limit=2").json
        assert [r["id"] for r in page1["runs"]] == ids[::-1][:2] and page1["next_cursor"]
        page2 = d.get("/v1/runs?limit=2&cursor=" + page1["next_cursor"]).json
        assert [r["id"] for r in page2["runs"]] == ids[::-1][2:4]
        page3 = d.get("/v1/runs?limit=2&cursor=" + page2["next_cursor"]).json
        assert [r["id"] for r in page3["runs"]] == ids[:1] and page3["next_cursor"] is None
        even = d.get("/v1/runs?name=even").json["runs"]
        assert sorted(r["id"] for r in even) == sorted(ids[0::2])
        assert len(d.get("/v1/runs?status=passed&kind=capacity").json["runs"]) == 5
        assert d.get("/v1/runs?status=running").json["runs"] == []
        assert d.get("/v1/runs?kind=generate").json["runs"] == []
    finally:
        d.stop()
        t.stop()


def test_queue_bound_cancel_and_delete():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1", "--max-queued-runs", "1"])
    try:
        r1 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        d.wait_status(r1, {"running"})
        r2 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        a = d.post("/v1/runs", spec(t, duration=60))
        assert a.status == 429 and a.json["error"]["code"] == "too_many_runs", a
        assert d.get("/v1/runs/" + r2).json["status"] == "queued"
        # A queued or running run cannot be deleted.
        assert d.request("DELETE", "/v1/runs/" + r2).json["error"]["code"] == "conflict"
        assert d.request("DELETE", "/v1/runs/" + r1).status == 409
        # Cancel the queued one: it ends at once, never started.
        a = d.post("/v1/runs/%s/cancel" % r2)
        assert a.status == 202 and a.json["status"] == "cancelled", a
        assert a.json["started_at"] is None
        # Let the running one measure a little, then cancel it: it stops within a second or so
        # and keeps what it measured.
        deadline = time.time() + 10
        while count_points(d, r1) < 2 and time.time() < deadline:
            time.sleep(0.1)
        t0 = time.time()
        a = d.post("/v1/runs/%s/cancel" % r1)
        assert a.status == 202, a
        doc = d.wait_status(r1, {"cancelled"}, timeout=5)
        assert time.time() - t0 < 2.5, "cancel took %.2fs" % (time.time() - t0)
        assert doc["verdict"] is None and doc["result"]["requests"] > 0, doc
        assert count_points(d, r1) >= 2
        # Cancelling again is a conflict; deleting now works.
        assert d.post("/v1/runs/%s/cancel" % r1).status == 409
        assert d.request("DELETE", "/v1/runs/" + r1).status == 204
        assert d.get("/v1/runs/" + r1).status == 404
        # The queue has room again.
        a = d.post("/v1/runs", spec(t, duration=1))
        assert a.status == 202, a
    finally:
        d.stop()
        t.stop()


def test_sigterm_cancels_and_exits():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1"])
    try:
        r1 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        r2 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        d.wait_status(r1, {"running"})
        deadline = time.time() + 10
        while count_points(d, r1) < 2 and time.time() < deadline:
            time.sleep(0.1)
        rc, took = d.stop(signal.SIGTERM)
        assert rc == 0, "exit code %d" % rc
        assert took < 5, "took %.2fs to exit" % took
        log = d.log_text()
        assert "event=stopped" in log
        d2 = ltd.Daemon(ARGS, db=d.db)
        try:
            doc = d2.get("/v1/runs/" + r1).json
            assert doc["status"] == "cancelled", doc
            assert doc["result"]["requests"] > 0
            assert count_points(d2, r1) >= 2
            assert d2.get("/v1/runs/" + r2).json["status"] == "cancelled"
        finally:
            d2.stop()
    finally:
        d.kill()
        t.stop()


def test_keepalive_requests_after_sigterm():
    """Requests on a keep-alive connection opened before SIGTERM keep running until the HTTP
    server stops, after the run pool was stopped: each gets a valid answer (a submit 202 before
    the pool stopped, 503 after) or a clean close, and the daemon exits 0 (under ASan this would
    abort on a use of the freed pool)."""
    import http.client
    import json
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1"])
    api = ltd.openapi(ARGS.source)
    seen = {}
    try:
        r1 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        d.wait_status(r1, {"running"})
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        body = json.dumps(spec(t, duration=60)).encode()
        hdrs = {"Content-Type": "application/json"}
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() is not None
        t0 = time.time()
        d.proc.send_signal(signal.SIGTERM)
        while time.time() - t0 < 8:
            try:
                conn.request("POST", "/v1/runs", body=body, headers=hdrs)
                r = conn.getresponse()
                raw = r.read()
                api.validate("POST", "/v1/runs", r.status, dict(r.getheaders()), raw)
                assert r.status in (202, 429, 503), (r.status, raw)
                seen[r.status] = seen.get(r.status, 0) + 1
                conn.request("GET", "/metrics")
                r = conn.getresponse()
                r.read()
                assert r.status == 200, r.status
            except (ConnectionError, http.client.HTTPException, OSError):
                break  # the server closed the connection: the answer to a stopping daemon
        conn.close()
        rc = d.proc.wait(10)
        took = time.time() - t0
        assert rc == 0, "exit code %d; log:\n%s" % (rc, d.log_text()[-3000:])
        assert took < 5, "took %.2fs to exit" % took
        assert "AddressSanitizer" not in d.log_text()
        print("     answers on the kept-alive connection after SIGTERM: %r" % seen)
    finally:
        d.kill()
        t.stop()


def test_sigkill_leaves_runs_interrupted():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1"])
    try:
        r1 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        r2 = d.post("/v1/runs", spec(t, duration=60)).json["id"]
        d.wait_status(r1, {"running"})
        deadline = time.time() + 10
        while count_points(d, r1) < 3 and time.time() < deadline:
            time.sleep(0.1)
        before = d.get("/v1/runs/%s/timeseries" % r1).json["points"]
        d.stop(signal.SIGKILL)
        d2 = ltd.Daemon(ARGS, db=d.db)
        try:
            doc = d2.get("/v1/runs/" + r1).json
            assert doc["status"] == "interrupted", doc
            assert doc["error"]["code"] == "interrupted" and doc["finished_at"]
            assert doc["result"] is not None and doc["result"]["requests"] > 0, doc
            after = d2.get("/v1/runs/%s/timeseries" % r1).json["points"]
            assert after[:len(before)] == before, "points committed before the kill were lost"
            assert d2.get("/v1/runs/" + r2).json["status"] == "interrupted"
            assert "interrupted_runs=2" in d2.log_text()
        finally:
            d2.stop()
    finally:
        d.kill()
        t.stop()


def test_idempotency_key():
    import threading
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "2", "--max-queued-runs", "20"])
    try:
        key = {"Idempotency-Key": "ci-build-1234"}
        a = d.post("/v1/runs", spec(t, duration=1), headers=key)
        assert a.status == 202 and a.header("Idempotent-Replayed") is None, a
        first = a.json["id"]
        b = d.post("/v1/runs", spec(t, duration=1), headers=key)
        assert b.status == 202 and b.json["id"] == first, b
        assert b.header("Idempotent-Replayed") == "true" and b.header("Location").endswith(first)
        c = d.post("/v1/runs", spec(t, duration=2), headers=key)
        assert c.status == 409 and c.json["error"]["code"] == "conflict", c
        bad = d.post("/v1/runs", spec(t), headers={"Idempotency-Key": "x" * 300})
        assert bad.status == 400 and bad.json["error"]["field"] == "Idempotency-Key", bad
        # Concurrent retries of one POST create one run.
        ids, errors = [], []

        def retry():
            try:
                dd = ltd.Daemon.__new__(ltd.Daemon)
                dd.__dict__.update(d.__dict__)
                dd.conn = None
                ids.append(dd.post("/v1/runs", spec(t, duration=1),
                                   headers={"Idempotency-Key": "race"}).json["id"])
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)
        threads = [threading.Thread(target=retry) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert len(ids) == 8 and len(set(ids)) == 1, ids
        runs = d.get("/v1/runs").json["runs"]
        assert len(runs) == 2, [r["id"] for r in runs]
        d.wait_status(first, {"passed"})
        # After the run finishes, a retry still finds it.
        again = d.post("/v1/runs", spec(t, duration=1), headers=key)
        assert again.json["id"] == first and again.json["status"] == "passed", again
    finally:
        d.stop()
        t.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_run_to_verdict_etag_and_series, test_listing_filters_and_cursor,
                            test_queue_bound_cancel_and_delete, test_sigterm_cancels_and_exits,
                            test_keepalive_requests_after_sigterm,
                            test_sigkill_leaves_runs_interrupted, test_idempotency_key]))
