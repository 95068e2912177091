"""Black-box tests of presets and baselines against the real loadtestd and latency_target:
preset CRUD with ETags and paging, secrets masked in every answer (and the log), runs from a
preset with JSON Merge Patch overrides (null removes a member), invalid overrides naming the
field, the run's `preset` and the list filter, Idempotency-Key on preset runs, tokens,
GET /v1/runs/{id}/compare by id and last_passed with its 404/409/400 cases, and the
thresholds.max_regression_pct check failing a run that got slower than its baseline.

Every answer is validated against openapi/openapi.yaml by ltd.Daemon."""

import os
import sqlite3
import sys
import tempfile
import time

import ltd

ARGS = ltd.parse_args()
FINAL = {"passed", "failed", "error", "cancelled", "interrupted"}
LOOSE = {"p99_ms": 5000}  # passing runs must not depend on how loaded the machine is

_env = {}


def shared():
    if not _env:
        _env["target"] = ltd.Target(ARGS, "latency_target")
        _env["daemon"] = ltd.Daemon(ARGS)
    return _env["daemon"], _env["target"]


def capacity(target, path="/fixed?ms=2", duration=1, users=2, rate=5, thresholds=None):
    return {"kind": "capacity",
            "target": {"url": target.base + path, "headers": {"X-Api-Key": "k-3f9a1c77e0"}},
            "load": {"users": users, "rate_per_user": rate, "duration_s": duration},
            "thresholds": dict(LOOSE if thresholds is None else thresholds)}


def put(d, name, spec, **kw):
    return d.request("PUT", "/v1/presets/" + name, body=spec, **kw)


def start(d, name, overrides=None, raw=None, headers=None):
    return d.post("/v1/presets/%s/runs" % name, body=overrides, raw_body=raw, headers=headers)


def wait(d, run_id):
    return d.wait_status(run_id, FINAL, timeout=60)


# ---------------------------------------------------------------- CRUD

def test_crud_etag_and_paging():
    d, t = shared()
    spec = capacity(t)
    a = put(d, "crud-a", spec)
    assert a.status == 201, a
    assert a.header("Location") == "/v1/presets/crud-a", a.headers
    etag1 = a.header("ETag")
    doc = a.json
    assert doc["name"] == "crud-a" and doc["kind"] == "capacity" and doc["version"] == 1, doc
    assert doc["created_at"] == doc["updated_at"], doc
    # As submitted: no defaults filled in (they are filled at each run).
    assert "method" not in doc["spec"]["target"] and "model" not in doc["spec"]["load"], doc

    g = d.get("/v1/presets/crud-a")
    assert g.status == 200 and g.header("ETag") == etag1 and g.json == doc, g
    nm = d.get("/v1/presets/crud-a", headers={"If-None-Match": etag1})
    assert nm.status == 304 and nm.raw == b"", nm

    spec["load"]["users"] = 3
    b = put(d, "crud-a", spec)
    assert b.status == 200 and b.header("Location") is None, b
    assert b.json["version"] == 2 and b.json["created_at"] == doc["created_at"], b.json
    assert b.json["spec"]["load"]["users"] == 3, b.json
    assert b.header("ETag") != etag1
    g = d.get("/v1/presets/crud-a", headers={"If-None-Match": etag1})
    assert g.status == 200 and g.json["version"] == 2, g

    for name in ("crud-c", "crud-B", "crud-b"):
        assert put(d, name, capacity(t)).status == 201
    names, cursor, pages = [], None, 0
    while True:
        q = "/v1/presets?limit=2" + ("&cursor=" + cursor if cursor else "")
        page = d.get(q)
        assert page.status == 200 and len(page.json["presets"]) <= 2, page
        names += [p["name"] for p in page.json["presets"]]
        cursor = page.json["next_cursor"]
        pages += 1
        if cursor is None:
            break
    crud = [n for n in names if n.startswith("crud-")]
    assert crud == ["crud-B", "crud-a", "crud-b", "crud-c"], names  # bytewise order
    assert names == sorted(names) and pages >= 2, names

    assert d.request("DELETE", "/v1/presets/crud-b").status == 204
    g = d.get("/v1/presets/crud-b")
    assert g.status == 404 and g.json["error"]["code"] == "not_found", g
    assert d.request("DELETE", "/v1/presets/crud-b").status == 404
    assert start(d, "crud-b").status == 404


def test_bad_requests_change_nothing():
    d, t = shared()
    assert put(d, "stable", capacity(t)).status == 201
    before = d.get("/v1/presets/stable").json
    cases = [
        (capacity(t, users=0), 400, "invalid_spec", "/load/users"),
        (dict(capacity(t), extra=1), 400, "invalid_spec", "/extra"),
        ({"kind": "nope"}, 400, "invalid_spec", "/kind"),
        (dict(capacity(t), target={"url": "http://192.0.2.1:80/x"}), 403, "forbidden_target",
         "/target/url"),
    ]
    for body, status, code, field in cases:
        a = put(d, "stable", body)
        assert a.status == status and a.json["error"]["code"] == code, (body, a)
        assert a.json["error"].get("field") == field, (body, a)
    a = d.request("PUT", "/v1/presets/stable", raw_body=b'{"kind":"capacity","kind":"x"}')
    assert a.status == 400 and a.json["error"]["code"] == "invalid_json", a
    assert d.get("/v1/presets/stable").json == before
    # Names: 1..63 of [A-Za-z0-9_-]; anything else is no route.
    assert put(d, "x" * 64, capacity(t)).status == 404
    assert put(d, "a.b", capacity(t)).status == 404
    assert put(d, "x" * 63, capacity(t)).status == 201
    a = d.get("/v1/presets?bogus=1")
    assert a.status == 400 and a.json["error"]["field"] == "bogus", a
    a = d.get("/v1/presets?cursor=a%20b")
    assert a.status == 400 and a.json["error"]["field"] == "cursor", a
    a = d.get("/v1/presets?limit=0")
    assert a.status == 400 and a.json["error"]["field"] == "limit", a
    a = d.get("/v1/runs?preset=a%20b")
    assert a.status == 400 and a.json["error"]["field"] == "preset", a
    a = d.request("PATCH", "/v1/presets/stable")
    assert a.status == 405 and "PUT" in a.header("Allow"), a


# ---------------------------------------------------------------- secrets

def test_secrets_masked_everywhere():
    d, t = shared()
    password = "S3cr3tPw-%d" % os.getpid()
    spec = {"kind": "generate",
            "database": {"dsn": "postgresql://loader:%s@127.0.0.1:1/traces" % password},
            "rows": 10, "dim": 4, "index": {"build": "none"}}
    answers = [put(d, "gen-secret", spec), put(d, "gen-secret", spec),
               d.get("/v1/presets/gen-secret"), d.get("/v1/presets")]
    assert answers[0].status == 201 and answers[1].status == 200, answers
    assert "***" in answers[2].json["spec"]["database"]["dsn"], answers[2]
    run = start(d, "gen-secret", {"rows": 20})
    assert run.status == 202, run
    doc = wait(d, run.json["id"])  # nothing listens on port 1: the run ends in error
    assert doc["status"] == "error" and doc["preset"] == "gen-secret", doc
    answers += [run, d.get("/v1/runs/" + run.json["id"]), d.get("/v1/runs?preset=gen-secret")]
    cap = capacity(t)
    assert put(d, "cap-secret", cap).status == 201
    answers.append(d.get("/v1/presets/cap-secret"))
    for a in answers:
        assert password.encode() not in a.raw and b"k-3f9a1c77e0" not in a.raw, a
    assert password not in d.log_text() and "k-3f9a1c77e0" not in d.log_text()
    # ... but the store keeps the real spec, so the preset can run.
    con = sqlite3.connect("file:%s?mode=ro" % d.db, uri=True)
    (stored,) = con.execute("SELECT spec_json FROM presets WHERE name = 'gen-secret'").fetchone()
    con.close()
    assert password in stored


# ---------------------------------------------------------------- runs from presets

def test_run_with_merge_overrides():
    d, t = shared()
    spec = capacity(t, thresholds={"p99_ms": 5000, "max_error_rate": 0.5})
    spec["target"]["headers"]["X-Trace"] = "on"
    assert put(d, "merge", spec).status == 201
    over = {"load": {"users": 3}, "thresholds": {"max_error_rate": None},
            "target": {"headers": {"X-Trace": None, "X-New": "1"}}}
    a = start(d, "merge", over)
    assert a.status == 202 and a.header("Location") == "/v1/runs/" + a.json["id"], a
    s = a.json["spec"]
    assert a.json["preset"] == "merge" and a.json["name"] == "merge", a.json
    assert s["load"]["users"] == 3 and s["load"]["rate_per_user"] == 5, s  # merged, others kept
    assert s["thresholds"] == {"p99_ms": 5000}, s  # null removed the member
    assert s["target"]["headers"] == {"X-Api-Key": "***", "X-New": "1"}, s
    assert s["target"]["url"] == spec["target"]["url"], s
    # The stored preset is unchanged by a run.
    assert d.get("/v1/presets/merge").json["spec"]["thresholds"]["max_error_rate"] == 0.5
    doc = wait(d, a.json["id"])
    assert doc["status"] == "passed", doc

    b = start(d, "merge", {"name": "named run"})
    assert b.status == 202 and b.json["name"] == "named run" and b.json["preset"] == "merge", b
    c = start(d, "merge", raw=b"")  # no body: the preset as it is
    assert c.status == 202 and c.json["spec"]["load"]["users"] == 2, c
    for i in (b, c):
        wait(d, i.json["id"])

    listed = d.get("/v1/runs?preset=merge&limit=1000").json["runs"]
    assert [r["id"] for r in listed] == [c.json["id"], b.json["id"], a.json["id"]], listed
    assert all(r["preset"] == "merge" for r in listed)
    assert d.get("/v1/runs?preset=merge&status=passed&limit=1").json["next_cursor"] is not None
    assert d.get("/v1/runs?preset=no-such-preset").json["runs"] == []
    plain = d.post("/v1/runs", body=capacity(t))
    assert plain.status == 202 and plain.json["preset"] is None, plain
    wait(d, plain.json["id"])
    assert d.get("/v1/runs/" + plain.json["id"]).json["preset"] is None


def test_invalid_overrides_name_the_field():
    d, t = shared()
    assert put(d, "ovr", capacity(t)).status == 201
    before = len(d.get("/v1/runs?preset=ovr").json["runs"])
    cases = [
        ({"load": {"users": 0}}, 400, "invalid_spec", "/load/users"),
        ({"bogus": 1}, 400, "invalid_spec", "/bogus"),
        ({"kind": "ratelimit"}, 400, "invalid_spec", None),
        ({"target": {"url": None}}, 400, "invalid_spec", "/target/url"),
        # (with the stored key replaced: else the key would be refused first, see below)
        ({"target": {"url": "http://192.0.2.1/", "headers": {"X-Api-Key": "other"}}}, 403,
         "forbidden_target", "/target/url"),
        ([1], 400, "invalid_spec", None),
    ]
    for body, status, code, field in cases:
        a = start(d, "ovr", body)
        assert a.status == status and a.json["error"]["code"] == code, (body, a)
        if field is not None:
            assert a.json["error"].get("field") == field, (body, a)
    a = start(d, "ovr", raw=b"{not json")
    assert a.status == 400 and a.json["error"]["code"] == "invalid_json", a
    a = start(d, "ovr", raw=b'{"load":{},"load":{}}')
    assert a.status == 400 and a.json["error"]["code"] == "invalid_json", a
    a = d.post("/v1/presets/ovr/runs?x=1", body={})
    assert a.status == 400 and a.json["error"]["field"] == "x", a
    assert len(d.get("/v1/runs?preset=ovr").json["runs"]) == before  # nothing was started


def test_idempotency_key_on_preset_runs():
    d, t = shared()
    assert put(d, "idem", capacity(t)).status == 201
    assert put(d, "idem2", capacity(t)).status == 201
    key = {"Idempotency-Key": "preset-key-%d" % os.getpid()}
    a = start(d, "idem", {"load": {"users": 1}}, headers=key)
    assert a.status == 202 and a.header("Idempotent-Replayed") is None, a
    b = start(d, "idem", {"load": {"users": 1}}, headers=key)
    assert b.status == 202 and b.header("Idempotent-Replayed") == "true", b
    assert b.json["id"] == a.json["id"], (a.json, b.json)
    c = start(d, "idem", {"load": {"users": 2}}, headers=key)
    assert c.status == 409 and c.json["error"]["code"] == "conflict", c
    # The same resulting spec from another preset, or from POST /v1/runs, is another request.
    e = start(d, "idem2", {"load": {"users": 1}, "name": "idem"}, headers=key)
    assert e.status == 409, e
    spec = dict(capacity(t), name="idem")
    spec["load"]["users"] = 1
    f = d.post("/v1/runs", body=spec, headers=key)
    assert f.status == 409, f
    bad = start(d, "idem", {}, headers={"Idempotency-Key": "has space"})
    assert bad.status == 400 and bad.json["error"]["field"] == "Idempotency-Key", bad
    assert len(d.get("/v1/runs?preset=idem").json["runs"]) == 1
    wait(d, a.json["id"])


def test_tokens():
    _, t = shared()
    fd, tokens = tempfile.mkstemp(prefix="tokens-")
    with os.fdopen(fd, "w") as f:
        f.write("write presets-write-token-0123456789\nread presets-read-token-0123456789\n")
    d = ltd.Daemon(ARGS, extra=["--token-file", tokens])
    w = {"Authorization": "Bearer presets-write-token-0123456789"}
    r = {"Authorization": "Bearer presets-read-token-0123456789"}
    try:
        assert put(d, "tok", capacity(t)).status == 401
        a = put(d, "tok", capacity(t), headers=r)
        assert a.status == 403 and a.json["error"]["code"] == "forbidden", a
        assert put(d, "tok", capacity(t), headers=w).status == 201
        assert d.get("/v1/presets/tok", headers=r).status == 200
        assert d.get("/v1/presets", headers=r).status == 200
        assert d.post("/v1/presets/tok/runs", body={}, headers=r).status == 403
        assert d.request("DELETE", "/v1/presets/tok", headers=r).status == 403
        a = d.post("/v1/presets/tok/runs", body={}, headers=w)
        assert a.status == 202, a
        wait_auth(d, a.json["id"], w)
        assert d.get("/v1/runs/%s/compare" % a.json["id"]).status == 401
        assert d.get("/v1/runs/%s/compare" % a.json["id"], headers=r).status == 404  # no base
        assert d.request("DELETE", "/v1/presets/tok", headers=w).status == 204
    finally:
        d.stop()
        os.unlink(tokens)


def wait_auth(d, run_id, headers):
    for _ in range(1200):
        doc = d.get("/v1/runs/" + run_id, headers=headers).json
        if doc["status"] in FINAL:
            return doc
        time.sleep(0.05)
    raise AssertionError("run %s did not end" % run_id)


# ---------------------------------------------------------------- baselines

def test_compare_by_id_and_last_passed():
    d, t = shared()
    assert put(d, "cmp", capacity(t, path="/fixed?ms=2")).status == 201
    base = start(d, "cmp").json["id"]
    wait(d, base)
    slow = start(d, "cmp", {"target": {"url": t.base + "/fixed?ms=1000"}}).json["id"]
    assert wait(d, slow)["status"] == "passed"  # no max_regression_pct: no baseline check

    a = d.get("/v1/runs/%s/compare?base=last_passed" % slow)
    assert a.status == 200, a
    c = a.json
    assert c["run"] == {"id": slow, "name": "cmp", "preset": "cmp", "status": "passed"}, c
    assert c["base"]["id"] == base and c["base"]["preset"] == "cmp", c
    assert c["max_regression_pct"] == 10 and c["regression"] is True, c
    names = [m["name"] for m in c["metrics"]]
    assert names == ["latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "latency_ms.max",
                     "service_time_ms.p99", "achieved_rps", "error_rate"], names
    m = {x["name"]: x for x in c["metrics"]}
    p99 = m["latency_ms.p99"]
    assert p99["run"] >= 1000 > p99["base"] and p99["regressed"] and p99["better"] == "lower", p99
    assert abs(p99["delta"] - (p99["run"] - p99["base"])) < 1e-6, p99
    assert abs(p99["delta_pct"] - p99["delta"] / p99["base"] * 100) < 1e-6, p99
    assert m["achieved_rps"]["better"] == "higher", m
    assert "latency_ms.p99" in c["summary"] and "REGRESSION" in c["summary"], c
    # Default base is last_passed; by id gives the same; the limit can be raised.
    assert d.get("/v1/runs/%s/compare" % slow).json == c
    assert d.get("/v1/runs/%s/compare?base=%s" % (slow, base)).json == c
    hi = d.get("/v1/runs/%s/compare?base=%s&max_regression_pct=1000" % (slow, base)).json
    assert hi["max_regression_pct"] == 1000 and hi["metrics"][2]["regressed"] is True, hi
    back = d.get("/v1/runs/%s/compare?base=%s" % (base, slow)).json
    assert back["base"]["id"] == slow and not [x for x in back["metrics"]
                                                if x["name"] == "latency_ms.p99"][0]["regressed"]
    # The first run has nothing before it.
    a = d.get("/v1/runs/%s/compare" % base)
    assert a.status == 404 and a.json["error"]["field"] == "base", a


def test_compare_errors():
    d, t = shared()
    a = d.get("/v1/runs/r0000000000000000000f/compare")
    assert a.status == 404 and a.json["error"]["code"] == "not_found", a
    run = d.post("/v1/runs", body=capacity(t)).json["id"]  # no preset, no name
    wait(d, run)
    a = d.get("/v1/runs/%s/compare" % run)
    assert a.status == 404 and a.json["error"]["field"] == "base", a
    a = d.get("/v1/runs/%s/compare?base=r0000000000000000000f" % run)
    assert a.status == 404 and a.json["error"]["field"] == "base", a
    for q, field in (("base=a.b", "base"), ("base=" + "x" * 40, "base"),
                     ("max_regression_pct=-1", "max_regression_pct"),
                     ("max_regression_pct=1001", "max_regression_pct"),
                     ("max_regression_pct=x", "max_regression_pct"), ("other=1", "other")):
        a = d.get("/v1/runs/%s/compare?%s" % (run, q))
        assert a.status == 400 and a.json["error"]["field"] == field, (q, a)
    # Kinds differ: 409.
    gen = d.post("/v1/runs", body={"kind": "generate",
                                   "database": {"dsn": "postgresql://u:p@127.0.0.1:1/db"},
                                   "rows": 10, "dim": 4}).json["id"]
    wait(d, gen)
    a = d.get("/v1/runs/%s/compare?base=%s" % (run, gen))
    assert a.status == 409 and a.json["error"]["code"] == "conflict", a
    # No result (a run still queued): 409. One run thread, busy with a long run.
    d1 = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "1"])
    try:
        busy = d1.post("/v1/runs", body=capacity(t, duration=30)).json["id"]
        d1.wait_status(busy, {"running"})
        queued = d1.post("/v1/runs", body=capacity(t)).json["id"]
        assert d1.get("/v1/runs/" + queued).json["status"] == "queued"
        a = d1.get("/v1/runs/%s/compare?base=%s" % (busy, queued))
        assert a.status == 409 and a.json["error"]["code"] == "conflict", a
        a = d1.get("/v1/runs/%s/compare?base=%s" % (queued, busy))
        assert a.status == 409, a
        for r in (queued, busy):
            d1.post("/v1/runs/%s/cancel" % r)
    finally:
        d1.stop()


def test_regression_threshold_fails_a_slower_run():
    d, t = shared()
    # 50 ms against 1000 ms: far apart even on a loaded machine or under sanitizers.
    spec = capacity(t, path="/fixed?ms=50", thresholds={"p99_ms": 5000, "max_regression_pct": 50})
    assert put(d, "gate", spec).status == 201
    first = start(d, "gate").json["id"]
    doc = wait(d, first)
    assert doc["status"] == "passed", doc
    assert "no baseline yet" in doc["verdict"]["summary"], doc["verdict"]
    assert [c["name"] for c in doc["verdict"]["checks"]] == ["p99_ms"], doc["verdict"]

    slow = start(d, "gate", {"target": {"url": t.base + "/fixed?ms=1000"}}).json["id"]
    doc = wait(d, slow)
    assert doc["status"] == "failed", doc
    v = doc["verdict"]
    assert v["pass"] is False and v["summary"].startswith("FAIL"), v
    reg = [c for c in v["checks"] if c["name"] == "regression_p99_pct"]
    assert len(reg) == 1, v
    reg = reg[0]
    assert reg["op"] == "<=" and reg["threshold"] == 50 and reg["pass"] is False, reg
    assert reg["observed"] > 50 and reg.get("base") == first, reg
    assert [c for c in v["checks"] if c["name"] == "p99_ms"][0]["pass"] is True, v
    # The check agrees with the compare route (one comparison for both).
    c = d.get("/v1/runs/%s/compare" % slow).json
    p99 = [m for m in c["metrics"] if m["name"] == "latency_ms.p99"][0]
    assert c["base"]["id"] == first and abs(p99["delta_pct"] - reg["observed"]) < 0.01, (c, reg)
    assert c["max_regression_pct"] == 50, c  # the spec's threshold is the default

    # The failed run is no baseline: a run as fast as the first compares with the first.
    again = start(d, "gate", {"thresholds": {"max_regression_pct": 1000}}).json["id"]
    doc = wait(d, again)
    reg = [c for c in doc["verdict"]["checks"] if c["name"] == "regression_p99_pct"][0]
    assert reg["base"] == first and reg["pass"] is True, doc["verdict"]
    assert doc["status"] == "passed", doc


def test_other_kinds_baseline_threshold():
    d, _ = shared()
    gen = {"kind": "generate", "database": {"dsn": "postgresql://u:p@127.0.0.1:1/db"},
           "rows": 10, "dim": 4, "thresholds": {"max_regression_pct": 20}}
    assert put(d, "gen-thr", gen).status == 201
    for thr, field in (({"max_regression_pct": 2000}, "/thresholds/max_regression_pct"),
                       ({"p99_ms": 5}, "/thresholds/p99_ms"), (5, "/thresholds")):
        a = put(d, "gen-thr", dict(gen, thresholds=thr))
        assert a.status == 400 and a.json["error"]["field"] == field, (thr, a)
    # A ratelimit preset run twice against a limiter that behaves: the first has no baseline,
    # the second is compared on its realistic success ratio (100% both times: no regression).
    bt = ltd.Target(ARGS, "bucket_target", extra=["--capacity", "10", "--refill-per-s", "5"])
    try:
        rl = {"kind": "ratelimit", "target": {"url": bt.base + "/v1/search"},
              "burst": {"expect_limit": 10, "tolerance": 2},
              "realistic": {"agents": 1, "requests_min": 2, "requests_max": 2, "window_s": 1,
                            "wait_s": 3},
              "thresholds": {"max_regression_pct": 10}}
        assert put(d, "rl-thr", rl).status == 201
        first = wait(d, start(d, "rl-thr").json["id"])
        assert first["status"] == "passed", first
        assert "no baseline yet" in first["verdict"]["summary"], first["verdict"]
        # The first run's realistic requests took 2 tokens; give the bucket (5/s) time to refill
        # (the tolerance covers it anyway).
        time.sleep(1)
        second = wait(d, start(d, "rl-thr").json["id"])
        reg = [c for c in second["verdict"]["checks"]
               if c["name"] == "regression_success_ratio_pct"]
        assert len(reg) == 1 and reg[0]["pass"] is True and reg[0]["observed"] == 0, second
        assert reg[0]["base"] == first["id"] and second["status"] == "passed", second
        c = d.get("/v1/runs/%s/compare" % second["id"]).json
        assert [m["name"] for m in c["metrics"]] == ["burst.accepted_before_first_429",
                                                      "realistic.success_ratio"], c
        assert c["metrics"][1]["run"] == 1 and c["regression"] is False, c
    finally:
        bt.stop()


# ---------------------------------------------------------------- review fixes

HOOK = "https://u:pw-7c1e@127.0.0.1:1/x?token=abc-9d2f"


def test_preset_answers_mask_the_webhook_url():
    d, t = shared()
    spec = capacity(t)
    spec["notify"] = {"webhook_url": HOOK}
    answers = [put(d, "hooked", spec), put(d, "hooked", spec), d.get("/v1/presets/hooked"),
               d.get("/v1/presets")]
    assert answers[0].status == 201 and answers[1].status == 200, answers
    for a in answers:
        assert b"pw-7c1e" not in a.raw and b"abc-9d2f" not in a.raw, a
    assert answers[2].json["spec"]["notify"]["webhook_url"] == "https://127.0.0.1:1/***", answers
    # A Slack incoming webhook's path and a token as the user part are secrets too.
    for url, secret in (("http://127.0.0.1:1/services/T0AAA/B0BBB/slackSecret77", b"slackSecret77"),
                        ("https://tokenUser88@127.0.0.1:1/", b"tokenUser88")):
        spec["notify"] = {"webhook_url": url}
        a = put(d, "hooked", spec)
        assert a.status == 200 and secret not in a.raw, a
        assert a.json["spec"]["notify"]["webhook_url"].endswith(":1/***"), a.json
        r = d.post("/v1/runs", dict(spec, load={"users": 1, "rate_per_user": 1, "duration_s": 1}))
        assert r.status == 202 and secret not in r.raw, r
        assert secret not in d.get("/v1/runs/" + r.json["id"]).raw
        wait(d, r.json["id"])
    # A webhook URL without anything secret is shown as it is.
    spec["notify"] = {"webhook_url": "http://127.0.0.1:1/"}
    a = put(d, "hooked", spec)
    assert a.json["spec"]["notify"]["webhook_url"] == "http://127.0.0.1:1/", a.json
    for word in ("pw-7c1e", "abc-9d2f", "slackSecret77", "tokenUser88"):
        assert word not in d.log_text(), word
    assert d.request("DELETE", "/v1/presets/hooked").status == 204


def test_masked_placeholder_refused():
    d, t = shared()
    gen = {"kind": "generate", "database": {"dsn": "postgresql://loader:***@127.0.0.1:1/traces"},
           "rows": 10, "dim": 4, "index": {"build": "none"}}
    cap = capacity(t)
    cap["target"]["headers"]["X-Api-Key"] = "***"
    hook = capacity(t)
    hook["notify"] = {"webhook_url": "https://127.0.0.1:1/***"}
    userinfo = capacity(t)
    userinfo["target"]["url"] = t.base.replace("http://", "http://me:***@") + "/fixed?ms=1"
    cases = [(cap, "/target/headers/X-Api-Key"), (gen, "/database/dsn"),
             (hook, "/notify/webhook_url"), (userinfo, "/target/url")]
    for spec, field in cases:
        for a in (put(d, "placeholder", spec), d.post("/v1/runs", spec)):
            assert a.status == 400, (field, a)
            err = a.json["error"]
            assert err["code"] == "invalid_spec" and err["field"] == field, (field, a)
            assert "masked placeholder" in err["message"], a
    assert d.get("/v1/presets/placeholder").status == 404
    # What GET answers, PUT back unchanged, is refused rather than stored as the secret.
    assert put(d, "placeholder", capacity(t)).status == 201
    back = d.get("/v1/presets/placeholder").json["spec"]
    a = put(d, "placeholder", back)
    assert a.status == 400 and a.json["error"]["field"] == "/target/headers/X-Api-Key", a
    # ... and so are overrides that send it.
    a = start(d, "placeholder", {"target": {"headers": {"X-Api-Key": "***"}}})
    assert a.status == 400 and a.json["error"]["field"] == "/target/headers/X-Api-Key", a
    # "***" where no secret goes is just text.
    ok = capacity(t)
    ok["name"] = "*** release ***"
    ok["target"]["headers"]["X-Trace"] = "***"
    a = put(d, "placeholder", ok)
    assert a.status == 200 and a.json["spec"]["target"]["headers"]["X-Trace"] == "***", a
    con = sqlite3.connect("file:%s?mode=ro" % d.db, uri=True)
    (stored,) = con.execute("SELECT spec_json FROM presets WHERE name = 'placeholder'").fetchone()
    con.close()
    assert "k-3f9a1c77e0" in stored  # the real key, never "***"
    assert d.request("DELETE", "/v1/presets/placeholder").status == 204


def test_overrides_cannot_send_stored_secrets_elsewhere():
    d, t = shared()
    assert put(d, "pinned", capacity(t)).status == 201
    port = int(t.base.rsplit(":", 1)[1])
    runs = len(d.get("/v1/runs?limit=1000").json["runs"])
    for url in ("http://127.0.0.1:1/fixed?ms=2", "http://localhost:%d/fixed?ms=2" % port,
                t.base.replace("http://", "https://") + "/fixed?ms=2"):
        a = start(d, "pinned", {"target": {"url": url}})
        assert a.status == 400, (url, a)
        err = a.json["error"]
        assert err["code"] == "invalid_spec" and err["field"] == "/target/url", a
        assert "/target/headers/X-Api-Key" in err["message"] and "PUT" in err["message"], a
        assert b"k-3f9a1c77e0" not in a.raw, a
    assert len(d.get("/v1/runs?limit=1000").json["runs"]) == runs, "a refused override ran"
    # Same endpoint, other path: fine. Another endpoint with the secret replaced or removed: fine.
    ok = [start(d, "pinned", {"target": {"url": t.base + "/fixed?ms=1"}}),
          start(d, "pinned", {"target": {"url": "http://127.0.0.1:1/x",
                                         "headers": {"X-Api-Key": "mine"}}}),
          start(d, "pinned", {"target": {"url": "http://127.0.0.1:1/x",
                                         "headers": {"X-Api-Key": None}}})]
    for a in ok:
        assert a.status == 202, a
        wait(d, a.json["id"])
    assert d.request("DELETE", "/v1/presets/pinned").status == 204


def test_etag_differs_after_recreate():
    d, t = shared()
    a = put(d, "reborn", capacity(t))
    assert a.status == 201, a
    old = a.header("ETag")
    assert d.request("DELETE", "/v1/presets/reborn").status == 204
    b = put(d, "reborn", capacity(t, users=3))
    assert b.status == 201 and b.json["version"] == a.json["version"], b
    assert b.header("ETag") != old, (old, b.header("ETag"))
    g = d.get("/v1/presets/reborn", headers={"If-None-Match": old})
    assert g.status == 200 and g.json["spec"]["load"]["users"] == 3, g
    assert d.request("DELETE", "/v1/presets/reborn").status == 204


def test_preset_column_survives_restart():
    d, t = shared()
    assert put(d, "restart", capacity(t)).status == 201
    rid = start(d, "restart").json["id"]
    wait(d, rid)
    # The same file in a new daemon: presets and the runs' preset are kept.
    d.stop()
    d3 = ltd.Daemon(ARGS, db=d.db)
    try:
        assert d3.get("/v1/presets/restart").status == 200
        assert d3.get("/v1/runs/" + rid).json["preset"] == "restart"
        assert [r["id"] for r in d3.get("/v1/runs?preset=restart").json["runs"]] == [rid]
    finally:
        d3.stop()
        _env.pop("daemon", None)


if __name__ == "__main__":
    tests = [test_crud_etag_and_paging, test_bad_requests_change_nothing,
             test_secrets_masked_everywhere, test_run_with_merge_overrides,
             test_invalid_overrides_name_the_field, test_idempotency_key_on_preset_runs,
             test_tokens, test_compare_by_id_and_last_passed, test_compare_errors,
             test_regression_threshold_fails_a_slower_run, test_other_kinds_baseline_threshold,
             test_preset_answers_mask_the_webhook_url, test_masked_placeholder_refused,
             test_overrides_cannot_send_stored_secrets_elsewhere, test_etag_differs_after_recreate,
             test_preset_column_survives_restart]
    try:
        rc = ltd.run_tests(tests)
    finally:
        if "daemon" in _env:
            _env["daemon"].stop()
        if "target" in _env:
            _env["target"].stop()
    sys.exit(rc)
