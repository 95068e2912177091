#!/usr/bin/python3
"""test_dashboard: the dashboard (GET /) in a real headless Chromium against a real loadtestd.

Starts loadtestd on a free loopback port and tests/targets/latency_target, creates a finished
capacity run and a running one, loads the page in `chromium --headless=new` (driven over the
DevTools pipe by cdp.py) and checks what it shows against the API: both runs listed with their
status and verdict, the finished run's checks and percentile tables equal to the API's numbers
and its latency histogram drawn, the running run's charts receiving points, no console error
or CSP violation; then the token prompt of a daemon with tokens, and, when the daemon has the
route, the compare view against GET /v1/runs/{id}/compare. Saves screenshots to ARTIFACTS
(dashboard.png: the run list; dashboard-run.png: a finished run; dashboard-live.png: a running
run). The running run is cancelled and everything started is stopped by PID at the end.

Run: /usr/bin/python3 test_dashboard.py --loadtestd BIN --targets DIR --source ROOT
     [--artifacts DIR] [--chromium BIN]
Prints one line per test and "N passed, N failed"; exits non-zero on any failure.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cdp  # noqa: E402
import ltd  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--loadtestd", required=True)
ap.add_argument("--targets", required=True)
ap.add_argument("--source", required=True)
ap.add_argument("--artifacts", default=None)
ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
ARGS = ap.parse_args()
ARTIFACTS = ARGS.artifacts or os.path.join(os.getcwd(), "test-artifacts")
T0 = time.time()


class Ctx:
    target = None
    daemon = None
    browser = None
    page = None
    finished = None  # run document of the finished run
    finished2 = None  # a second finished run of the same name (compare)
    running = None  # id of the running run
    has_compare = False


C = Ctx()


def capacity(name, duration_s, users=2, rate=20):
    return {"kind": "capacity", "name": name,
            "target": {"url": C.target.base + "/fixed?ms=3", "method": "GET"},
            "load": {"users": users, "rate_per_user": rate, "duration_s": duration_s},
            "thresholds": {"p99_ms": 2000, "max_error_rate": 0.5}}


def js_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def goto(hash_):
    C.page.evaluate("location.hash = %s" % js_str(hash_))


# ---------------------------------------------------------------------------- tests

def test_setup():
    """latency_target, loadtestd, a finished and a running capacity run, headless Chromium."""
    routes = subprocess.run([ARGS.loadtestd, "--print-routes"], stdout=subprocess.PIPE,
                            text=True, check=True, timeout=30).stdout
    assert "/v1/runs/{id}/compare" in routes, "loadtestd lists no compare route"
    C.has_compare = True
    C.target = ltd.Target(ARGS, "latency_target")
    C.daemon = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "4"])
    d = C.daemon
    first = d.post("/v1/runs", capacity("dash-finished", 2))
    assert first.status == 202, first
    second = None
    if C.has_compare:
        second = d.post("/v1/runs", capacity("dash-finished", 2))
        assert second.status == 202, second
    C.browser = cdp.Browser(ARGS.chromium)
    C.page = C.browser.page()
    C.finished = d.wait_status(first.json["id"], ["passed", "failed", "error"], timeout=20)
    assert C.finished["status"] == "passed", C.finished
    if second:
        C.finished2 = d.wait_status(second.json["id"], ["passed", "failed", "error"], timeout=20)
    run = d.post("/v1/runs", capacity("dash-running", 120, users=2, rate=25))
    assert run.status == 202, run
    C.running = run.json["id"]
    d.wait_status(C.running, ["running"], timeout=10)


def test_page_and_assets():
    """GET / and /ui/{asset}: content types, CSP, ETag and 304, no token needed."""
    d = C.daemon
    page = d.get("/")
    assert page.status == 200 and page.header("Content-Type").startswith("text/html"), page
    csp = page.header("Content-Security-Policy") or ""
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp, csp
    assert b"/ui/app.js" in page.raw and b"<script>" not in page.raw, page.raw[:200]
    for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
        a = d.get("/ui/" + name)
        assert a.status == 200 and a.header("Content-Type").startswith(ctype), a
        with open(os.path.join(ARGS.source, "service", "web", name), "rb") as f:
            assert a.raw == f.read(), "%s served differs from service/web/%s" % (name, name)
        etag = a.header("ETag")
        assert etag, a
        again = d.get("/ui/" + name, headers={"If-None-Match": etag})
        assert again.status == 304 and not again.raw, again
    for bad in ("/ui/nope.js", "/ui/index.html", "/ui/.app.js", "/ui/app.js/x", "/ui/"):
        assert d.get(bad).status == 404, bad
    assert d.post("/").status == 405


def test_run_list():
    """The list shows both runs, newest first, with their status and the verdict."""
    C.page.navigate("http://127.0.0.1:%d/" % C.daemon.port)
    fin, run = C.finished["id"], C.running
    C.page.wait_for("document.querySelector('tr[data-run-id=%s]') && "
                    "document.querySelector('tr[data-run-id=%s]')" % (js_str(fin), js_str(run)),
                    what="both runs in the list")
    rows = C.page.evaluate(
        "[...document.querySelectorAll('#runs-table tbody tr[data-run-id]')].map(r => ["
        "r.dataset.runId, r.querySelector('[data-role=status]').textContent,"
        "(r.querySelector('[data-role=verdict]') || {}).textContent || '',"
        "r.querySelector('td.summary').textContent])")
    api = C.daemon.get("/v1/runs").json["runs"]
    assert [r[0] for r in rows] == [r["id"] for r in api], (rows, api)
    by_id = {r[0]: r for r in rows}
    assert by_id[fin][1] == "passed" and by_id[fin][2] == "PASS", by_id[fin]
    assert by_id[fin][3] == C.finished["verdict"]["summary"], by_id[fin]
    assert by_id[run][1] == "running" and by_id[run][2] == "", by_id[run]
    C.page.screenshot(os.path.join(ARTIFACTS, "dashboard.png"))


def test_finished_run_view():
    """The finished run: checks and percentiles equal to the API's, histogram drawn."""
    fin = C.finished
    goto("#/runs/" + fin["id"])
    C.page.wait_for("document.querySelectorAll('#checks-table tr[data-check]').length > 0 && "
                    "document.querySelectorAll('#percentile-table tr[data-pct]').length > 0",
                    what="checks and percentile tables")
    checks = C.page.evaluate(
        "[...document.querySelectorAll('#checks-table tr[data-check]')].map(r => [r.dataset.check,"
        "JSON.parse(r.querySelector('[data-role=observed]').dataset.value),"
        "JSON.parse(r.querySelector('[data-role=threshold]').dataset.value),"
        "r.querySelector('.pill').textContent])")
    want = [[c["name"], c["observed"], c["threshold"], "pass" if c["pass"] else "fail"]
            for c in fin["verdict"]["checks"]]
    assert checks == want, "checks table %r != API %r" % (checks, want)
    pct = C.page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#percentile-table tr[data-pct]')]"
        ".map(r => [r.dataset.pct, [r.querySelector('[data-role=latency]').dataset.value,"
        "r.querySelector('[data-role=service]').dataset.value]]))")
    for key in ("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"):
        lat = fin["result"]["latency_ms"][key]
        svc = fin["result"]["service_time_ms"][key]
        assert float(pct[key][0]) == lat and float(pct[key][1]) == svc, (key, pct[key], lat, svc)
    shown = C.page.evaluate("document.querySelector('#percentile-table tr[data-pct=p99] "
                            "[data-role=latency]').textContent")
    assert shown.endswith(" ms"), shown
    status = C.page.evaluate("document.querySelector('h1 [data-role=status]').textContent")
    assert status == "passed", status
    C.page.wait_for("+(document.querySelector('#histogram-chart') || {dataset: {}})"
                    ".dataset.points > 0", what="latency histogram")
    C.page.wait_for("+document.querySelector('#chart-rps').dataset.points > 0",
                    what="points of the finished run")
    n = int(C.page.evaluate("document.querySelector('#chart-rps').dataset.points"))
    pts = C.daemon.get("/v1/runs/%s/timeseries" % fin["id"]).json["points"]
    assert n == len(pts), "rps chart has %d points, the API %d" % (n, len(pts))
    C.page.screenshot(os.path.join(ARTIFACTS, "dashboard-run.png"))


def test_running_run_charts_grow():
    """The running run's charts receive points every second while it runs."""
    goto("#/runs/" + C.running)
    C.page.wait_for("document.querySelector('h1 [data-role=status]') && "
                    "document.querySelector('h1 [data-role=status]').textContent === 'running'",
                    what="running status")
    first = int(C.page.wait_for("+document.querySelector('#chart-rps').dataset.points",
                                what="first points of the running run"))
    # Each second of the run adds one point; 2.5 s later there must be more.
    later = int(C.page.wait_for(
        "+document.querySelector('#chart-rps').dataset.points > %d && "
        "+document.querySelector('#chart-rps').dataset.points" % first, timeout=10,
        what="more points than %d" % first))
    lat = int(C.page.evaluate("document.querySelector('#chart-latency').dataset.points"))
    frac = float(C.page.evaluate("document.querySelector('#progress').dataset.fraction"))
    assert later > first and lat > 0 and 0 < frac < 1, (first, later, lat, frac)
    time.sleep(1.2)
    C.page.screenshot(os.path.join(ARTIFACTS, "dashboard-live.png"))
    problems = C.page.console_problems()
    assert not problems, "console errors / CSP violations:\n  " + "\n  ".join(problems)


def test_compare_view():
    """The compare view shows the API's metrics, regressed rows marked; 404 shows no baseline."""
    run, base = C.finished2["id"], C.finished["id"]
    ans = C.daemon.get("/v1/runs/%s/compare?base=%s" % (run, base))
    goto("#/runs/%s/compare?base=%s" % (run, base))
    assert ans.status == 200, ans
    C.page.wait_for("document.querySelectorAll('#compare-table tr[data-metric]').length",
                    what="compare table")
    rows = C.page.evaluate(
        "[...document.querySelectorAll('#compare-table tr[data-metric]')].map(r => "
        "[r.dataset.metric, r.dataset.regressed === 'true', r.classList.contains('bad')])")
    want = [[m["name"], m["regressed"], m["regressed"]] for m in ans.json["metrics"]]
    assert len(want) >= 5 and rows == want, (rows, want)
    C.page.screenshot(os.path.join(ARTIFACTS, "dashboard-compare.png"))
    missing = "r" + "0" * 20  # well formed, never stored
    ans = C.daemon.get("/v1/runs/%s/compare?base=%s" % (run, missing))
    assert ans.status == 404, ans
    goto("#/runs/%s/compare?base=%s" % (run, missing))
    C.page.wait_for("document.querySelector('#no-baseline')", what="no baseline notice")


def test_token_prompt():
    """With tokens configured the page asks for one on 401, then lists runs with it."""
    tmp = tempfile.mkdtemp(prefix="ltd-dash-tok-")
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write("read dash-read-token-0123456789\n")
    os.chmod(tokens, 0o600)
    d = ltd.Daemon(ARGS, extra=["--token-file", tokens])
    try:
        assert d.get("/").status == 200  # the page itself needs no token
        assert d.get("/ui/app.js").status == 200
        assert d.get("/v1/runs").status == 401
        page = C.browser.page()
        page.navigate("http://127.0.0.1:%d/" % d.port)
        page.wait_for("!document.querySelector('#token-overlay').classList.contains('hidden')",
                      what="token prompt")
        page.evaluate("document.querySelector('#token-input').value = 'wrong';"
                      "document.querySelector('#token-ok').click()")
        page.wait_for("document.querySelector('#token-error').textContent.includes('not accepted')",
                      what="refusal of a bad token")
        page.evaluate("document.querySelector('#token-input').value = "
                      "'dash-read-token-0123456789'; document.querySelector('#token-ok').click()")
        page.wait_for("document.querySelector('#runs-table td.empty')", what="list with a token")
        stored = page.evaluate("sessionStorage.getItem('loadtestd.token')")
        assert stored == "dash-read-token-0123456789", stored
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_teardown():
    """The running run is cancelled; the whole test stayed well under a minute."""
    if C.running:
        a = C.daemon.post("/v1/runs/%s/cancel" % C.running)
        assert a.status == 202, a
        C.daemon.wait_status(C.running, ["cancelled"], timeout=10)
    elapsed = time.time() - T0
    assert elapsed < 60, "the browser test took %.1f s" % elapsed


def cleanup():
    if C.browser:
        C.browser.close()
    if C.daemon:
        C.daemon.stop()
    if C.target:
        C.target.stop()


if __name__ == "__main__":
    try:
        rc = ltd.run_tests([test_setup, test_page_and_assets, test_run_list,
                            test_finished_run_view, test_running_run_charts_grow,
                            test_compare_view, test_token_prompt, test_teardown])
    finally:
        cleanup()
    print("screenshots: %s" % ARTIFACTS)
    sys.exit(rc)
