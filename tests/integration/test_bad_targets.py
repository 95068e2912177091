"""Misbehaving targets through the REST API: capacity and ratelimit runs aimed at a target that
resets connections (RST), answers garbage (not HTTP), accepts but never answers, closes in the
middle of an answer, or a port where nothing listens. Each run must end (passed/failed with the
errors counted by class in result.errors, or error with a clear message) within duration +
timeout + a small slack, never hang nor crash the daemon, which keeps serving throughout."""

import sys
import time

import ltd

ARGS = ltd.parse_args()
DURATION = 2
TIMEOUT_MS = 1000
SLACK_S = 8  # start-up, the final second, and a loaded 2-core machine

# path on latency_target -> the error classes its failures may be counted in
MODES = {
    "/reset": {"other", "connect"},
    "/garbage": {"other"},
    "/hang": {"timeout"},
    "/truncated": {"other"},
}


free_port = ltd.free_port


def ratelimit_spec(url):
    return {"kind": "ratelimit", "target": {"url": url, "timeout_ms": TIMEOUT_MS},
            "burst": {"expect_limit": 5, "tolerance": 1, "max_requests": 20},
            "realistic": {"agents": 1, "requests_min": 1, "requests_max": 2, "window_s": 1}}


def check_capacity(d, run_id, path, t0):
    doc = d.wait_status(run_id, ltd.FINISHED, timeout=DURATION + TIMEOUT_MS / 1000 + SLACK_S)
    took = time.time() - t0
    assert doc["status"] in ("passed", "failed", "error"), (path, doc["status"], doc)
    if doc["status"] == "error":
        # Only when no request got an answer at all: the message says what happened.
        assert "unreachable" in doc["error"]["message"] or doc["error"]["message"], doc
    res = doc["result"]
    assert res is not None, (path, doc)
    errors = res["errors"]
    total = sum(errors.values())
    assert res["requests"] > 0 and total == res["requests"], (path, res["requests"], errors)
    expected = MODES.get(path, {"connect"})
    assert sum(errors[k] for k in expected) == total, (path, errors)
    assert res["error_rate"] == 1.0, (path, res)
    if doc["status"] != "error":
        assert doc["verdict"] and doc["verdict"]["pass"] is False, (path, doc["verdict"])
    return doc, took


def test_capacity_against_misbehaving_targets():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "10", "--max-queued-runs", "20"])
    try:
        urls = {p: t.base + p for p in MODES}
        urls["refused"] = "http://127.0.0.1:%d/" % free_port()
        started = {}
        # Both engines: the fast HTTP/1.1 path (auto, for http://) and libcurl's.
        for engine in ("auto", "libcurl"):
            for path, url in urls.items():
                spec = ltd.capacity_spec(url, duration=DURATION, users=2, rate=10,
                                         timeout_ms=TIMEOUT_MS, name="bad" + path,
                                         thresholds={"max_error_rate": 0.01})
                spec["load"]["engine"] = engine
                a = d.post("/v1/runs", spec)
                assert a.status == 202, a
                started[(engine, path)] = (a.json["id"], time.time())
        for (engine, path), (run_id, t0) in started.items():
            doc, took = check_capacity(d, run_id, path, t0)
            print("capacity %-7s %-11s %-6s %.1fs errors=%r%s" % (
                engine, path, doc["status"], took, doc["result"]["errors"],
                " error=%r" % doc["error"]["message"] if doc["error"] else ""), flush=True)
            assert d.get("/healthz").status == 200
        # The daemon still does real work.
        a = d.post("/v1/runs", ltd.capacity_spec(t.base + "/fixed?ms=1", duration=1))
        assert d.wait_status(a.json["id"], {"passed"})["result"]["errors"]["other"] == 0
        assert d.proc.poll() is None
        assert d.stop()[0] == 0
    finally:
        d.kill()
        t.stop()


def test_ratelimit_against_misbehaving_targets():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "6", "--max-queued-runs", "20"])
    try:
        urls = {p: t.base + p for p in MODES}
        urls["refused"] = "http://127.0.0.1:%d/" % free_port()
        started = {}
        for path, url in urls.items():
            a = d.post("/v1/runs", ratelimit_spec(url))
            assert a.status == 202, a
            started[path] = (a.json["id"], time.time())
        for path, (run_id, t0) in started.items():
            # The burst gives up after 3 requests without an HTTP answer, each at most
            # timeout_ms: no duration here, so the bound is 3 timeouts + slack.
            doc = d.wait_status(run_id, ltd.FINISHED, timeout=3 * TIMEOUT_MS / 1000 + SLACK_S)
            took = time.time() - t0
            assert doc["status"] in ("failed", "error"), (path, doc)
            if doc["status"] == "error":
                assert doc["error"]["code"] and doc["error"]["message"], doc
            else:
                assert doc["verdict"]["pass"] is False, doc
            print("ratelimit %-11s %-6s %.1fs %s" % (
                path, doc["status"], took,
                doc["error"]["message"] if doc["error"] else doc["verdict"]["summary"]),
                flush=True)
            assert d.get("/healthz").status == 200
        assert d.proc.poll() is None
        assert d.stop()[0] == 0
    finally:
        d.kill()
        t.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_capacity_against_misbehaving_targets,
                            test_ratelimit_against_misbehaving_targets]))
