"""Black-box tests of the ratelimit kind through the REST API: the real loadtestd checks the
bucket_target test server (a token bucket with known capacity and refill rate, one bucket per
API key) and the run document, verdict and timeseries it answers are compared with what the
target was configured to do. Every answer is validated against openapi/openapi.yaml by ltd.

Usage: test_ratelimit_api.py --loadtestd PATH --targets DIR --source REPO"""

import http.client
import json
import sys
import time

import ltd

ARGS = ltd.parse_args()
FINAL = {"passed", "failed", "error", "cancelled", "interrupted"}
PHASES = {"setup", "burst", "refill", "realistic"}


def spec(target, **over):
    s = {"kind": "ratelimit", "name": "rl-it",
         "target": {"url": target.base + "/v1/search", "headers": {"X-Client": "it"}},
         "setup": {"url": target.base + "/keys", "body": {"plan": "free"},
                   "extract": {"json_pointer": "/api_key", "header": "X-API-Key"}},
         "burst": {"expect_limit": 20, "tolerance": 1, "observe_refill_s": 4},
         "realistic": {"agents": 2, "requests_min": 3, "requests_max": 5, "window_s": 2,
                       "seed": 11},
         "expect": {"refill_per_s": 5, "refill_tolerance": 0.2, "retry_after": True}}
    s.update(over)
    return s


def target_stats(target):
    c = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        c.request("GET", "/control/stats")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def test_ratelimit_run_passes():
    """A limiter that does what it says passes every check; result, summary and timeseries
    carry the measured figures."""
    t = ltd.Target(ARGS, "bucket_target",
                   extra=["--capacity", "20", "--refill-per-s", "5", "--identity-header",
                          "X-API-Key", "--retry-after", "--ratelimit-headers"])
    d = ltd.Daemon(ARGS)
    try:
        a = d.post("/v1/runs", spec(t))
        assert a.status == 202, a
        run_id = a.json["id"]
        assert a.header("Location") == "/v1/runs/" + run_id, a.headers
        stored = a.json["spec"]
        # Defaults are filled in the stored spec.
        assert stored["burst"]["stop_after_429"] == 1 and stored["burst"]["rate"] is None, stored
        assert stored["burst"]["max_requests"] == 200, stored
        assert stored["setup"]["method"] == "POST", stored
        assert stored["setup"]["extract"]["prefix"] == "", stored
        assert stored["realistic"]["concurrent_with_burst"] is False, stored
        assert stored["realistic"]["wait_s"] is None, stored

        doc = d.wait_status(run_id, FINAL, timeout=90)
        assert doc["status"] == "passed", doc
        assert doc["progress"]["fraction"] == 1.0, doc["progress"]
        b, r = doc["result"]["burst"], doc["result"]["realistic"]
        assert 19 <= b["accepted_before_first_429"] <= 21, b
        assert b["limited"] is True and b["errors"] == 0, b
        assert b["first_429_ms"] > 0, b
        assert b["retry_after_s"] >= 1 and b["retry_after_honoured"] is True, b
        assert b["limit_headers"]["x-ratelimit-limit"] == "20", b["limit_headers"]
        assert "retry-after" in b["limit_headers"], b["limit_headers"]
        assert abs(b["refill_per_s"] - 5) <= 1, b
        assert b["refill_source"] == "observed", b
        assert 19 <= b["capacity_estimate"] <= 21, b
        assert r["agents"] == 2 and r["identities"] == "own" and r["seed"] == 11, r
        assert r["requests"] >= 6 and r["succeeded"] == r["requests"], r
        assert r["rate_limited"] == 0 and r["errors"] == 0, r
        assert r["latency_ms"]["p50"] is not None, r
        assert doc["result"]["identities"] == 3 and doc["result"]["complete"] is True, doc

        v = doc["verdict"]
        names = {c["name"]: c for c in v["checks"]}
        assert set(names) == {"burst_limit", "realistic_success", "refill_per_s",
                              "retry_after"}, names
        assert all(c["pass"] for c in v["checks"]), v
        assert names["burst_limit"]["op"] == "between", names
        assert names["burst_limit"]["threshold"] == [19, 21], names
        assert v["summary"].startswith("PASS burst limited after "), v["summary"]
        assert "realistic %d/%d ok" % (r["requests"], r["requests"]) in v["summary"], v
        assert "refill" in v["summary"] and "Retry-After" in v["summary"], v

        # One point per second from t = 1, every request (setup calls aside) in one of them.
        ts = d.get("/v1/runs/%s/timeseries" % run_id).json["points"]
        assert [p["t"] for p in ts] == list(range(1, len(ts) + 1)), ts
        for p in ts:
            assert p["phase"] in PHASES, p
            assert p["requests"] == p["accepted"] + p["rate_limited"] + p["errors"], p
        ra_check = 1 if b["retry_after_honoured"] is not None else 0
        sent = b["requests"] + ra_check + b["refill"]["probes"] + r["requests"]
        assert sum(p["requests"] for p in ts) == sent, (sum(p["requests"] for p in ts), sent)
        assert {"burst", "refill", "realistic"} <= {p["phase"] for p in ts}, ts
        later = d.get("/v1/runs/%s/timeseries?since=1" % run_id).json["points"]
        assert [p["t"] for p in later] == [p["t"] for p in ts if p["t"] > 1], later

        # The target saw three keys (burst + 2 realistic agents) and nothing without one.
        stats = target_stats(t)
        assert stats["keys_issued"] == 3 and "-" not in stats["identities"], stats
        counts = sorted(v["requests"] for v in stats["identities"].values())
        per_agent = sorted([x["requests"] for x in r["per_agent"]] + [sent - r["requests"]])
        assert counts == per_agent, (counts, per_agent)
        listed = d.get("/v1/runs?kind=ratelimit").json["runs"]
        assert [x["id"] for x in listed] == [run_id], listed
    finally:
        d.stop()
        t.stop()


def test_ratelimit_rejected_specs():
    """Bad ratelimit specs are refused with the field named; a setup URL off the allowlist is
    refused before anything runs."""
    t = ltd.Target(ARGS, "bucket_target")
    d = ltd.Daemon(ARGS)
    try:
        no_setup = spec(t)
        del no_setup["setup"]
        cases = [
            (dict(spec(t), burst={"tolerance": 1}), None, "/burst/expect_limit"),
            (dict(spec(t), burst={"expect_limit": 60, "max_requests": 50}), None,
             "/burst/max_requests"),
            (dict(spec(t), realistic={"requests_min": 9, "requests_max": 3}), None,
             "/realistic/requests_min"),
            (dict(spec(t), setup={"url": t.base + "/keys",
                                  "extract": {"json_pointer": "api_key", "header": "X-K"}}),
             None, "/setup/extract/json_pointer"),
            (dict(no_setup, realistic={"concurrent_with_burst": True}), None,
             "/realistic/concurrent_with_burst"),
        ]
        for body, _, field in cases:
            a = d.post("/v1/runs", body)
            assert a.status == 400, (body, a)
            assert a.json["error"]["code"] == "invalid_spec", a
            assert a.json["error"]["field"] == field, (field, a)
        s = spec(t)
        s["setup"]["url"] = "http://10.255.255.1:9/keys"
        a = d.post("/v1/runs", s)
        assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
        assert a.json["error"]["field"] == "/setup/url", a
        assert d.get("/v1/runs?kind=ratelimit").json["runs"] == []
    finally:
        d.stop()
        t.stop()


def test_ratelimit_cancel_keeps_partial_result():
    """A cancelled ratelimit run ends cancelled within a second or two and keeps what it
    measured."""
    t = ltd.Target(ARGS, "bucket_target",
                   extra=["--capacity", "10", "--refill-per-s", "1", "--identity-header",
                          "X-API-Key"])
    d = ltd.Daemon(ARGS)
    try:
        s = spec(t, burst={"expect_limit": 10}, expect={},
                 realistic={"agents": 2, "requests_min": 10, "requests_max": 10,
                            "window_s": 60})
        a = d.post("/v1/runs", s)
        assert a.status == 202, a
        run_id = a.json["id"]
        doc = d.wait_status(run_id, {"running"}, timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline:
            doc = d.get("/v1/runs/" + run_id).json
            if doc["result"] and doc["result"]["realistic"]["requests"] > 0:
                break
            time.sleep(0.1)
        a = d.post("/v1/runs/%s/cancel" % run_id)
        assert a.status == 202, a
        t0 = time.time()
        doc = d.wait_status(run_id, FINAL, timeout=10)
        assert doc["status"] == "cancelled", doc
        assert time.time() - t0 < 3, time.time() - t0
        assert doc["verdict"] is None, doc
        res = doc["result"]
        assert res["complete"] is False, res
        assert res["burst"]["accepted_before_first_429"] == 10, res
        assert res["realistic"]["requests"] > 0, res
    finally:
        d.stop()
        t.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_ratelimit_run_passes, test_ratelimit_rejected_specs,
                            test_ratelimit_cancel_keeps_partial_result]))
