"""Black-box tests of GET /metrics: the answer parses as Prometheus text exposition 0.0.4 (a small
parser below checks the syntax and that every sample belongs to a family with HELP and TYPE),
the run and load counters follow a real capacity run against latency_target, API requests are
counted by route pattern (never the raw path), and the route needs a token when tokens are
configured."""

import http.client
import json
import os
import re
import sys
import tempfile
import time

import ltd

ARGS = ltd.parse_args()

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"\s*(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad label set %r at %d" % (text, pos)
        value = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        assert m.group(1) not in labels, "label %s twice in %r" % (m.group(1), text)
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def parse_value(text):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    return float(text)  # raises on garbage


def family_of(name, families):
    """The family a sample name belongs to (histogram samples carry a suffix)."""
    if name in families:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") == "histogram":
            return base
    return None


def parse_exposition(text):
    """Parses Prometheus text format 0.0.4. Returns {family: {"type", "help", "samples":
    [(name, labels, value)]}}; raises AssertionError on any syntax or structure problem."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families = {}
    seen_series = set()
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (n, line)
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert METRIC_NAME.match(name), where
                fam = families.setdefault(name, {"samples": []})
                key = parts[1].lower()
                assert key not in fam, "second %s for %s: %s" % (parts[1], name, where)
                assert not fam["samples"], "%s after samples of %s" % (parts[1], name)
                if key == "type":
                    assert len(parts) == 4 and parts[3] in TYPES, where
                    fam["type"] = parts[3]
                else:
                    fam["help"] = parts[3] if len(parts) == 4 else ""
            continue
        assert line.strip(), "empty line %d" % n
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?\d+)?$", line)
        assert m, "not a sample: " + where
        name, labels, value = m.group(1), parse_labels(m.group(3) or ""), parse_value(m.group(4))
        fam = family_of(name, families)
        assert fam, "sample of a family without TYPE: " + where
        series = (name, tuple(sorted(labels.items())))
        assert series not in seen_series, "duplicate series: " + where
        seen_series.add(series)
        families[fam]["samples"].append((name, labels, value))
    for name, fam in families.items():
        assert "type" in fam and "help" in fam, "family %s lacks HELP or TYPE" % name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    """Buckets cumulative and ending in +Inf, equal to _count, per label set."""
    groups = {}
    for sname, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "count": None, "sum": None})
        if sname.endswith("_bucket"):
            g["buckets"].append((parse_value(labels["le"]), value))
        elif sname.endswith("_count"):
            g["count"] = value
        elif sname.endswith("_sum"):
            g["sum"] = value
    for key, g in groups.items():
        les = [le for le, _ in g["buckets"]]
        assert les == sorted(les) and les[-1] == float("inf"), (name, key, les)
        counts = [c for _, c in g["buckets"]]
        assert counts == sorted(counts), "%s %s buckets not cumulative: %s" % (name, key, counts)
        assert g["count"] == counts[-1], (name, key, g)
        assert g["sum"] is not None and g["sum"] >= 0, (name, key, g)


def value(families, name, **labels):
    """The value of the one sample name{labels} (labels given must match; others ignored when
    the sample has exactly those); 0 when absent (counters not yet incremented)."""
    fam = families[family_of(name, families)]
    for sname, slabels, v in fam["samples"]:
        if sname == name and slabels == labels:
            return v
    return 0


def scrape(d, headers=None):
    a = d.get("/metrics", headers=headers)
    assert a.status == 200, a
    assert a.header("Content-Type").startswith("text/plain; version=0.0.4"), a.headers
    return a, parse_exposition(a.raw.decode("utf-8"))


FAMILIES = {
    "loadtestd_runs": "gauge", "loadtestd_runs_active": "gauge", "loadtestd_runs_queued": "gauge",
    "loadtestd_requests_sent_total": "counter", "loadtestd_request_errors_total": "counter",
    "loadtestd_rows_inserted_total": "counter", "loadtestd_api_requests_total": "counter",
    "loadtestd_api_request_duration_seconds": "histogram", "loadtestd_build_info": "gauge",
    "process_start_time_seconds": "gauge", "loadtestd_longpoll_held": "gauge",
}


def test_parser_rejects_broken_text():
    # The parser must be able to fail, or the other tests prove nothing.
    good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 3\n"
    parse_exposition(good)
    for bad in ("a_total 3\n",                                            # no TYPE
                good + "a_total{k=\"v\"} 4\n",                            # duplicate series
                good.replace("} 3", "} three"),                           # bad value
                good.replace('k="v"', 'k=v'),                             # unquoted label
                good[:-1],                                                # no final newline
                "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"):        # not cumulative
        try:
            parse_exposition(bad)
        except (AssertionError, ValueError):
            continue
        raise AssertionError("parser accepted %r" % bad)


def test_scrape_parses():
    d = ltd.Daemon(ARGS)
    try:
        d.get("/healthz")
        a, fams = scrape(d)
        for name, typ in FAMILIES.items():
            assert name in fams and fams[name]["type"] == typ, (name, fams.get(name))
        version = d.get("/v1/version").json["version"]
        assert value(fams, "loadtestd_build_info", version=version) == 1
        statuses = {s["status"] for _, s, _ in fams["loadtestd_runs"]["samples"]}
        assert statuses == {"queued", "running", "passed", "failed", "error", "cancelled",
                            "interrupted"}, statuses
        kinds = {s["kind"] for _, s, _ in fams["loadtestd_requests_sent_total"]["samples"]}
        assert kinds == {"capacity", "ratelimit", "generate"}, kinds
        assert value(fams, "loadtestd_api_requests_total", method="GET", route="/healthz",
                     code="200") == 1
        assert value(fams, "loadtestd_api_request_duration_seconds_count", route="/healthz") == 1
        start = value(fams, "process_start_time_seconds")
        assert 1.6e9 < start <= time.time() + 1, start
        # HEAD answers the headers only.
        h = d.request("HEAD", "/metrics")
        assert h.status == 200 and h.raw == b"", h
    finally:
        d.stop()


def capacity_spec(t, path, duration=2, users=2, rate=10, thresholds=None):
    return {"kind": "capacity", "name": "metrics-test", "target": {"url": t.base + path},
            "load": {"users": users, "rate_per_user": rate, "duration_s": duration},
            "thresholds": thresholds or {"p99_ms": 10000}}


def target_requests(t):
    c = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        c.request("GET", "/control/stats")
        return json.loads(c.getresponse().read())["requests"]
    finally:
        c.close()


def test_counters_follow_a_capacity_run():
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS)
    try:
        _, before = scrape(d)
        a = d.post("/v1/runs", capacity_spec(t, "/fixed?ms=2"))
        assert a.status == 202, a
        doc = d.wait_status(a.json["id"], {"passed", "failed", "error"}, timeout=60)
        assert doc["status"] == "passed", doc
        received = target_requests(t)
        _, after = scrape(d)
        sent = (value(after, "loadtestd_requests_sent_total", kind="capacity") -
                value(before, "loadtestd_requests_sent_total", kind="capacity"))
        assert doc["result"]["requests"] <= sent <= received, (doc["result"]["requests"], sent,
                                                               received)
        assert value(after, "loadtestd_request_errors_total", kind="capacity") == 0
        assert value(after, "loadtestd_requests_sent_total", kind="ratelimit") == 0
        assert value(after, "loadtestd_runs", status="passed") == \
            value(before, "loadtestd_runs", status="passed") + 1
        assert value(after, "loadtestd_runs_active") == 0
        assert value(after, "loadtestd_runs_queued") == 0
        assert value(after, "loadtestd_api_requests_total", method="POST", route="/v1/runs",
                     code="202") == 1
        polls = value(after, "loadtestd_api_requests_total", method="GET",
                      route="/v1/runs/{id}", code="200")
        assert polls >= 1, polls

        # Errors: every answer of /status?code=500 is an unexpected status.
        a = d.post("/v1/runs", capacity_spec(t, "/status?code=500", duration=1, users=1,
                                             thresholds={"max_error_rate": 1.0}))
        doc = d.wait_status(a.json["id"], {"passed", "failed", "error"}, timeout=60)
        errors = doc["result"]["errors"]["unexpected_status"]
        assert errors >= 1, doc["result"]
        _, last = scrape(d)
        got = value(last, "loadtestd_request_errors_total", kind="capacity")
        sent2 = (value(last, "loadtestd_requests_sent_total", kind="capacity") -
                 value(after, "loadtestd_requests_sent_total", kind="capacity"))
        assert errors <= got <= sent2, (errors, got, sent2)
    finally:
        d.stop()
        t.stop()


def test_routes_are_patterns_and_unmatched_is_other():
    d = ltd.Daemon(ARGS)
    try:
        assert d.get("/no/such/path").status == 404
        assert d.get("/v1/runs/rdoesnotexist0000000000").status == 404
        assert d.request("DELETE", "/metrics").status == 405
        # No query parameters: /metrics never long-polls, and refuses what it does not know.
        for q, name in (("?wait=5", "wait"), ("?x=1", "x")):
            b = d.get("/metrics" + q)
            assert b.status == 400 and b.json["error"]["code"] == "invalid_parameter", b
            assert b.json["error"]["field"] == name, b
        a, fams = scrape(d)
        assert value(fams, "loadtestd_api_requests_total", method="GET", route="other",
                     code="404") == 1
        assert value(fams, "loadtestd_api_requests_total", method="GET", route="/v1/runs/{id}",
                     code="404") == 1
        assert value(fams, "loadtestd_api_requests_total", method="DELETE", route="/metrics",
                     code="405") == 1
        assert value(fams, "loadtestd_api_requests_total", method="GET", route="/metrics",
                     code="400") == 2
        assert value(fams, "loadtestd_api_request_duration_seconds_count", route="other") == 1
        text = a.raw.decode()
        assert "rdoesnotexist" not in text and "/no/such" not in text, "raw path in a label"
        # A strange method counts as "other", not as a new label value.
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("BREW", "/healthz")
        r = c.getresponse()
        r.read()
        c.close()
        _, fams = scrape(d)
        methods = {s["method"] for _, s, _ in fams["loadtestd_api_requests_total"]["samples"]}
        assert "BREW" not in methods, methods
    finally:
        d.stop()


READ = "read-token-metrics-0123456789"
WRITE = "write-token-metrics-987654321"


def test_needs_a_token_when_configured():
    fd, path = tempfile.mkstemp(prefix="ltd-tokens-")
    with os.fdopen(fd, "w") as f:
        f.write("read %s\nwrite %s\n" % (READ, WRITE))
    d = ltd.Daemon(ARGS, extra=["--token-file", path])
    try:
        a = d.get("/metrics")
        assert a.status == 401 and a.json["error"]["code"] == "unauthorized", a
        a = d.get("/metrics", headers={"Authorization": "Bearer wrong-token-00000000000"})
        assert a.status == 401, a
        _, fams = scrape(d, headers={"Authorization": "Bearer " + READ})
        assert value(fams, "loadtestd_api_requests_total", method="GET", route="/metrics",
                     code="401") == 2
    finally:
        d.stop()
        os.unlink(path)
    assert READ not in d.log_text()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_parser_rejects_broken_text, test_scrape_parses,
                            test_counters_follow_a_capacity_run,
                            test_routes_are_patterns_and_unmatched_is_other,
                            test_needs_a_token_when_configured]))
