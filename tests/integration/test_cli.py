"""Black-box tests of the `loadtest` CLI against the real loadtestd and the latency_target test
server: exit codes (0 passed, 1 failed, 2 cancelled/interrupted/timed out, 3 usage/connection/
refused, 4 status of an unfinished run), --set overrides reaching the stored spec, --json equal to
GET, JUnit XML (counts, failure messages, escaping), list/status/cancel/compare, the bearer token
(sent, never printed), POST retries with one Idempotency-Key (against a flaky fake server), and the
progress output (plain lines without \\r off a terminal, one redrawn line on a terminal).

Usage: test_cli.py --loadtestd PATH --targets DIR --source REPO --loadtest PATH"""

import argparse
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ltd  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadtestd", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--loadtest", required=True)
    args, _ = ap.parse_known_args()
    return args


ARGS = parse_args()
TMP = tempfile.mkdtemp(prefix="ltd-cli-")
WRITE_TOKEN = "cli-write-token-5f1e2d3c4b5a6978"
READ_TOKEN = "cli-read-token-0a1b2c3d4e5f6a7b"
FINAL = {"passed", "failed", "error", "cancelled", "interrupted"}
# Tests that need a passing run but do not test thresholds use this, so that a loaded machine or
# a sanitizer build of the daemon does not turn them red; test_run_wait_passes uses p99_ms 500.
LOOSE = {"p99_ms": 5000}

_env = {}  # the shared daemon and target, started on first use


def shared():
    if not _env:
        _env["target"] = ltd.Target(ARGS, "latency_target")
        _env["daemon"] = ltd.Daemon(ARGS)
    return _env["daemon"], _env["target"]


def spec(target, path="/fixed?ms=2", duration=2, users=2, rate=10, thresholds=None, name=None):
    s = {"kind": "capacity",
         "target": {"url": target.base + path},
         "load": {"users": users, "rate_per_user": rate, "duration_s": duration},
         "thresholds": thresholds if thresholds is not None else {"p99_ms": 500}}
    if name is not None:
        s["name"] = name
    return s


def spec_file(s, name="spec.json"):
    fd, path = tempfile.mkstemp(prefix="spec-", suffix="-" + name, dir=TMP)
    with os.fdopen(fd, "w") as f:
        f.write(s if isinstance(s, str) else json.dumps(s))
    return path


def server_url(d):
    return "http://127.0.0.1:%d" % d.port


def lt(*args, d=None, env=None, input=None, timeout=120):
    """Runs loadtest with stdout/stderr captured (so never on a terminal)."""
    e = dict(os.environ)
    e.pop("LOADTEST_TOKEN", None)
    e.pop("LOADTEST_SERVER", None)
    e.update(env or {})
    cmd = [ARGS.loadtest] + (["--server", server_url(d)] if d else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=e)
    return out


def lt_bg(*args, d=None, env=None):
    e = dict(os.environ)
    e.pop("LOADTEST_TOKEN", None)
    e.update(env or {})
    cmd = [ARGS.loadtest] + (["--server", server_url(d)] if d else []) + list(args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def check_plain(out):
    assert "\r" not in out.stdout and "\r" not in out.stderr, "\\r in non-terminal output"
    assert "\x1b[" not in out.stderr, "terminal escapes in non-terminal output"


def first_line_id(proc):
    """Reads the run id loadtest prints first on stdout."""
    line = proc.stdout.readline().strip()
    assert line.startswith("r") and len(line) == 21, "expected a run id, got %r" % line
    return line


def wait_running(d, run_id, timeout=20):
    return d.wait_status(run_id, {"running"} | FINAL, timeout=timeout)


# ---------------------------------------------------------------- basics

def test_help_version_usage():
    out = lt("--version")
    assert out.returncode == 0 and out.stdout.startswith("loadtest "), out
    out = lt("--help")
    assert out.returncode == 0 and "run" in out.stdout and "compare" in out.stdout, out
    for cmd in ("run", "status", "list", "cancel", "compare"):
        out = lt(cmd, "--help")
        assert out.returncode == 0 and out.stdout.startswith("Usage: loadtest " + cmd), out
        assert "Exit status" in out.stdout, out
    out = lt("status", "--help")
    assert "4  (without --wait) the run is still queued or running" in out.stdout, out.stdout
    for bad in ([], ["frobnicate"], ["run"], ["run", "a.json", "--bogus"], ["list", "extra"],
                ["run", "a.json", "--set", "noequals"], ["list", "--limit", "0"],
                ["compare", "onlyone"], ["run", "a.json", "--idempotency-key", "has space"]):
        out = lt(*bad)
        assert out.returncode == 3, (bad, out)
        assert out.stderr.strip(), (bad, out)


def test_run_wait_passes():
    d, t = shared()
    out = lt("run", spec_file(spec(t)), "--wait", d=d)
    assert out.returncode == 0, out
    check_plain(out)
    lines = out.stdout.splitlines()
    run_id = lines[0]
    doc = d.get("/v1/runs/" + run_id).json
    assert doc["status"] == "passed", doc
    table = [ln for ln in lines if ln.startswith("p99_ms")]
    assert len(table) == 1 and table[0].split()[1:] == ["<", "500", table[0].split()[3], "PASS"], out
    assert "CHECK" in out.stdout and "OBSERVED" in out.stdout, out.stdout
    assert lines[-1] == doc["verdict"]["summary"], out.stdout
    # Progress went to stderr as plain lines, at least at each status change.
    assert "%s queued" % run_id in out.stderr or "%s running" % run_id in out.stderr, out.stderr
    assert "%s passed" % run_id in out.stderr, out.stderr


def test_run_wait_fails_verdict():
    d, t = shared()
    s = spec(t, thresholds={"p99_ms": 0.001, "max_error_rate": 0.5})
    out = lt("run", spec_file(s), "--wait", d=d)
    assert out.returncode == 1, out
    check_plain(out)
    rows = {ln.split()[0]: ln.split() for ln in out.stdout.splitlines()
            if ln.startswith(("p99_ms", "max_error_rate"))}
    assert rows["p99_ms"][-1] == "FAIL" and rows["max_error_rate"][-1] == "PASS", out.stdout
    assert "FAIL" in out.stdout.splitlines()[-1], out.stdout


def test_run_from_stdin():
    d, t = shared()
    out = lt("run", "-", "--wait", "--name", "from-stdin", d=d,
             input=json.dumps(spec(t, thresholds=LOOSE)))
    assert out.returncode == 0, out
    doc = d.get("/v1/runs/" + out.stdout.splitlines()[0]).json
    assert doc["name"] == "from-stdin" and doc["status"] == "passed", doc


def test_set_overrides_reach_stored_spec():
    d, t = shared()
    path = spec_file(spec(t))
    out = lt("run", path, "--set", "load.users=3", "--set", "load.rate_per_user=4",
             "--set", "target.timeout_ms=1500", "--set", "target.headers.X-Env=ci test",
             "--set", 'target.headers.X-Num="50"', "--set", "target.expect_status=[200, 204]",
             "--set", "thresholds.max_error_rate=0.25", "--set", "name=set-test",
             "--name", "set-test-final", d=d)
    assert out.returncode == 0, out
    run_id = out.stdout.strip()
    assert out.stdout == run_id + "\n", "without --wait only the id is printed: %r" % out.stdout
    doc = d.get("/v1/runs/" + run_id).json
    s = doc["spec"]
    assert s["load"]["users"] == 3 and s["load"]["rate_per_user"] == 4, s
    assert s["target"]["timeout_ms"] == 1500, s
    assert s["target"]["headers"] == {"X-Env": "ci test", "X-Num": "50"}, s
    assert s["target"]["expect_status"] == [200, 204], s
    assert s["thresholds"] == {"p99_ms": 500, "max_error_rate": 0.25}, s
    assert doc["name"] == "set-test-final", doc
    # The spec file itself is untouched.
    with open(path) as f:
        assert json.load(f)["load"]["users"] == 2
    d.post("/v1/runs/%s/cancel" % run_id)
    d.wait_status(run_id, FINAL)
    # A path through a number is refused before anything is sent.
    out = lt("run", path, "--set", "load.users.x=1", d=d)
    assert out.returncode == 3 and "load.users.x" in out.stderr, out


def test_json_output_matches_get():
    d, t = shared()
    out = lt("run", spec_file(spec(t, name="json-out", thresholds=LOOSE)), "--wait", "--json",
             d=d)
    assert out.returncode == 0, out
    doc = json.loads(out.stdout)  # stdout holds the document and nothing else
    assert doc["status"] == "passed", doc
    assert doc == d.get("/v1/runs/" + doc["id"]).json
    # status --json and run --json (no --wait) too.
    st = lt("status", doc["id"], "--json", d=d)
    assert st.returncode == 0 and json.loads(st.stdout) == doc, st
    out = lt("run", spec_file(spec(t, duration=1)), "--json", d=d)
    assert out.returncode == 0, out
    created = json.loads(out.stdout)
    assert created["status"] == "queued" and created["id"], created
    d.wait_status(created["id"], FINAL)


# ---------------------------------------------------------------- JUnit

def junit(path):
    root = ET.parse(path).getroot()
    assert root.tag == "testsuite" and root.get("name") == "loadtest", root
    return root, root.findall("testcase")


def test_junit_pass_fail_and_escaping():
    d, t = shared()
    report = os.path.join(TMP, "pass.xml")
    out = lt("run", spec_file(spec(t, name="junit-pass", thresholds=LOOSE)), "--junit", report,
             d=d)
    assert out.returncode == 0, out  # --junit implies --wait
    root, cases = junit(report)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
    assert float(root.get("time")) >= 1.5, root.attrib
    assert len(cases) == 1 and cases[0].get("classname") == "loadtest.capacity.junit-pass"
    assert cases[0].get("name") == "p99_ms" and cases[0].find("failure") is None
    assert "PASS" in root.find("system-out").text, root.find("system-out").text

    name = "jx <&>\"' \x01\tend"
    s = spec(t, name=name, thresholds={"p99_ms": 0.001, "max_error_rate": 0.5})
    report = os.path.join(TMP, "fail.xml")
    out = lt("run", spec_file(s), "--wait", "--junit", report, d=d)
    assert out.returncode == 1, out
    assert "\x01" not in out.stdout, "control characters must not reach the terminal"
    root, cases = junit(report)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    assert [c.get("name") for c in cases] == ["p99_ms", "max_error_rate"], cases
    assert cases[0].get("classname") == "loadtest.capacity.jx <&>\"' \\u0001\tend", cases[0].attrib
    fail = cases[0].find("failure")
    assert fail is not None and cases[1].find("failure") is None
    msg = fail.get("message")
    assert msg.startswith("observed ") and msg.endswith(", threshold < 0.001"), msg
    assert "FAIL" in root.find("system-out").text


def test_junit_cancelled_run_is_an_error():
    d, t = shared()
    report = os.path.join(TMP, "cancelled.xml")
    p = lt_bg("run", spec_file(spec(t, duration=20, name="junit-cancel")), "--junit", report, d=d)
    run_id = first_line_id(p)
    wait_running(d, run_id)
    assert lt("cancel", run_id, d=d).returncode == 0
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2, err
    root, cases = junit(report)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    e = cases[0].find("error")
    assert cases[0].get("name") == "run" and e is not None, ET.tostring(root)
    assert e.get("type") == "cancelled" and "cancelled" in e.get("message"), e.attrib


def test_junit_for_unreachable_daemon():
    report = os.path.join(TMP, "unreachable.xml")
    d, t = shared()
    out = lt("--server", "http://127.0.0.1:%d" % free_port(), "run",
             spec_file(spec(t), name="nightly.json"), "--junit", report)
    assert out.returncode == 3, out
    root, cases = junit(report)
    assert root.get("errors") == "1" and cases[0].find("error") is not None
    # A spec without a name gets a stable test name from its file name.
    assert cases[0].get("classname").startswith("loadtest.capacity.spec-"), cases[0].attrib
    assert cases[0].get("classname").endswith("-nightly"), cases[0].attrib


# ---------------------------------------------------------------- exit code 2 and 3

def test_cancel_from_another_process_exits_2():
    d, t = shared()
    p = lt_bg("run", spec_file(spec(t, duration=20)), "--wait", d=d)
    run_id = first_line_id(p)
    wait_running(d, run_id)
    c = lt("cancel", run_id, d=d)
    assert c.returncode == 0 and "cancelling" in c.stdout, c
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2, (out, err)
    assert "cancelled" in out, out
    assert d.get("/v1/runs/" + run_id).json["status"] == "cancelled"
    # Cancelling a finished run is not an error: the run is stopped either way.
    c = lt("cancel", run_id, d=d)
    assert c.returncode == 0 and "already finished: cancelled" in c.stdout, c


def test_interrupt_cancels_the_run():
    d, t = shared()
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = lt_bg("run", spec_file(spec(t, duration=20)), "--wait", d=d)
        run_id = first_line_id(p)
        wait_running(d, run_id)
        t0 = time.time()
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 2, (sig, out, err)
        assert time.time() - t0 < 10, "loadtest took too long to stop"
        assert "cancelling run " + run_id in err, err
        assert d.get("/v1/runs/" + run_id).json["status"] == "cancelled"


def test_timeout_cancels_and_exits_2():
    d, t = shared()
    t0 = time.time()
    out = lt("run", spec_file(spec(t, duration=20)), "--timeout", "1", d=d)
    assert out.returncode == 2, out
    assert time.time() - t0 < 10, "--timeout 1 took %.1fs" % (time.time() - t0)
    assert "--timeout of 1 s reached" in out.stderr, out.stderr
    run_id = out.stdout.splitlines()[0]
    assert d.wait_status(run_id, FINAL)["status"] == "cancelled"


free_port = ltd.free_port


def test_unreachable_server_exits_3():
    d, t = shared()
    path = spec_file(spec(t))
    t0 = time.time()
    out = lt("run", path, "--wait", env={"LOADTEST_SERVER": "http://127.0.0.1:%d" % free_port()})
    assert out.returncode == 3, out
    assert "cannot reach loadtestd" in out.stderr, out.stderr
    assert out.stderr.count("retrying") == 3, out.stderr  # three retries with backoff
    assert 3.0 < time.time() - t0 < 20, time.time() - t0
    out = lt("status", "r0123456789abcdef0123", "--server", "http://127.0.0.1:%d" % free_port())
    assert out.returncode == 3, out
    out = lt("list", "--server", "ftp://127.0.0.1/")
    assert out.returncode == 3 and "http://" in out.stderr, out


def test_bad_specs_exit_3_with_the_field():
    d, t = shared()
    before = len(d.get("/v1/runs?limit=1000").json["runs"])
    out = lt("run", spec_file('{"kind": "capacity",\n  "load": {'), d=d)
    assert out.returncode == 3 and ":2:" in out.stderr, out
    out = lt("run", spec_file("[1, 2]"), d=d)
    assert out.returncode == 3 and "JSON object" in out.stderr, out
    out = lt("run", spec_file('{"kind": "capacity", "kind": "generate"}'), d=d)
    assert out.returncode == 3 and "duplicate" in out.stderr, out
    out = lt("run", os.path.join(TMP, "missing.json"), d=d)
    assert out.returncode == 3 and "cannot open spec" in out.stderr, out
    out = lt("run", spec_file(spec(t)), "--set", "load.users=0", "--wait", d=d)
    assert out.returncode == 3, out
    assert "invalid_spec" in out.stderr and "/load/users" in out.stderr, out.stderr
    out = lt("run", spec_file(spec(t)), "--set", "load.userz=1", d=d)
    assert out.returncode == 3 and "/load/userz" in out.stderr, out
    assert out.stdout == "", out.stdout
    assert len(d.get("/v1/runs?limit=1000").json["runs"]) == before, "a refused spec was stored"


# ---------------------------------------------------------------- status, list, cancel, compare

def test_status_exit_codes_and_cancel():
    d, t = shared()
    out = lt("run", spec_file(spec(t, duration=20, name="status-test")), d=d)
    run_id = out.stdout.strip()
    wait_running(d, run_id)
    st = lt("status", run_id, d=d)
    assert st.returncode == 4, st  # not finished: not a pass
    assert "running" in st.stdout and "progress:" in st.stdout, st.stdout
    c = lt("cancel", run_id, "--wait", d=d)
    assert c.returncode == 0 and "ended: cancelled" in c.stdout, c
    st = lt("status", run_id, d=d)
    assert st.returncode == 2 and "cancelled" in st.stdout, st
    st = lt("status", run_id, "--wait", d=d)  # already final: returns at once
    assert st.returncode == 2, st
    st = lt("status", "r0000000000000000000f", d=d)
    assert st.returncode == 3 and "not_found" in st.stderr, st
    c = lt("cancel", "r0000000000000000000f", d=d)
    assert c.returncode == 3, c

    out = lt("run", spec_file(spec(t, thresholds={"p99_ms": 0.001})), "--wait", d=d)
    failed_id = out.stdout.splitlines()[0]
    st = lt("status", failed_id, d=d)
    assert st.returncode == 1 and "FAIL" in st.stdout, st
    out = lt("run", spec_file(spec(t, duration=1, thresholds=LOOSE)), "--wait", d=d)
    st = lt("status", out.stdout.splitlines()[0], "--wait", d=d)
    assert st.returncode == 0 and "PASS" in st.stdout, st


def test_list_table_json_and_cursor():
    d, t = shared()
    name = "list-%d" % os.getpid()
    ids = []
    for _ in range(3):
        out = lt("run", spec_file(spec(t, duration=1, users=1, rate=2, name=name,
                                       thresholds=LOOSE)), d=d)
        assert out.returncode == 0, out
        ids.append(out.stdout.strip())
    for i in ids:
        d.wait_status(i, FINAL)
    out = lt("list", "--name", name, "--json", "--page-size", "2", "--limit", "3", "-v", d=d)
    assert out.returncode == 0, out
    got = json.loads(out.stdout)
    assert [r["id"] for r in got["runs"]] == ids[::-1], got  # newest first, across two pages
    assert out.stderr.count("> GET") == 2 and "cursor=" in out.stderr, out.stderr
    out = lt("list", "--name", name, "--limit", "2", d=d)
    assert out.returncode == 0, out
    check_plain(out)
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "NAME", "STATUS", "CREATED", "VERDICT"], lines
    assert [ln.split()[0] for ln in lines[1:]] == ids[::-1][:2], lines
    assert all(ln.split()[1:4] == ["capacity", name, "passed"] for ln in lines[1:]), lines
    assert "PASS" in lines[1], lines
    out = lt("list", "--status", "passed", "--kind", "capacity", "--limit", "1000", d=d)
    assert out.returncode == 0 and all(i in out.stdout for i in ids), out
    out = lt("list", "--kind", "bogus", d=d)
    assert out.returncode == 3 and "invalid_parameter" in out.stderr, out
    out = lt("list", "--name", "no-such-name-%d" % os.getpid(), d=d)
    assert out.returncode == 0 and out.stdout == "" and "no runs" in out.stderr, out


def test_compare_p99_regression():
    d, t = shared()
    # 2 ms against 1000 ms: far apart even when a sanitizer build slows the daemon down.
    name = "cmp-%d" % os.getpid()
    fast = lt("run", spec_file(spec(t, path="/fixed?ms=2", name=name, thresholds={})),
              "--wait", d=d)
    slow = lt("run", spec_file(spec(t, path="/fixed?ms=1000", name=name, thresholds={})),
              "--wait", d=d)
    assert fast.returncode == 0 and slow.returncode == 0, (fast, slow)
    fast_id, slow_id = fast.stdout.splitlines()[0], slow.stdout.splitlines()[0]
    out = lt("compare", slow_id, fast_id, d=d)
    assert out.returncode == 1 and "REGRESSION" in out.stdout.splitlines()[-1], out
    rows = {ln.split()[0]: ln for ln in out.stdout.splitlines() if ln.strip()}
    for metric in ("latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "latency_ms.max",
                   "service_time_ms.p99", "achieved_rps", "error_rate"):
        assert metric in rows, (metric, out.stdout)
    assert rows["latency_ms.p99"].split()[1] == "!", rows  # marked as regressed
    out = lt("compare", fast_id, slow_id, d=d)
    assert out.returncode == 0 and out.stdout.splitlines()[-1].startswith("ok"), out
    # last_passed: the run before slow with the same name is fast.
    out = lt("compare", slow_id, "last_passed", "--json", d=d)
    assert out.returncode == 1, out
    c = json.loads(out.stdout)
    assert c["regression"] is True and c["run"]["id"] == slow_id and c["base"]["id"] == fast_id, c
    assert c["max_regression_pct"] == 10, c
    p99 = [m for m in c["metrics"] if m["name"] == "latency_ms.p99"][0]
    assert p99["run"] >= 1000 > p99["base"] and p99["delta_pct"] > 10 and p99["regressed"], p99
    assert abs(p99["delta"] - (p99["run"] - p99["base"])) < 1e-6, p99
    direct = d.get("/v1/runs/%s/compare?base=%s" % (slow_id, fast_id)).json
    for key in ("run", "base", "regression", "summary", "max_regression_pct"):
        assert c[key] == direct[key], (key, c, direct)
    assert [m["name"] for m in c["metrics"]] == [m["name"] for m in direct["metrics"]], c
    out = lt("compare", slow_id, fast_id, "--max-regression-pct", "1000", "--json", d=d)
    assert json.loads(out.stdout)["max_regression_pct"] == 1000, out
    out = lt("compare", slow_id, fast_id, "--max-regression-pct", "100000", d=d)
    assert out.returncode == 3 and "0 to 1000" in out.stderr, out
    out = lt("compare", fast_id, "last_passed", d=d)  # nothing passed before it with that name
    assert out.returncode == 3 and "not_found" in out.stderr, out
    out = lt("compare", slow_id, "r0000000000000000000f", d=d)
    assert out.returncode == 3, out


# ---------------------------------------------------------------- token, idempotency, retries

def test_token_sent_and_never_printed():
    _, t = shared()
    fd, tokens = tempfile.mkstemp(prefix="tokens-", dir=TMP)
    with os.fdopen(fd, "w") as f:
        f.write("write %s\nread %s\n" % (WRITE_TOKEN, READ_TOKEN))
    d = ltd.Daemon(ARGS, extra=["--token-file", tokens])
    try:
        path = spec_file(spec(t, name="token-test", thresholds=LOOSE))
        out = lt("list", d=d)
        assert out.returncode == 3 and "unauthorized" in out.stderr, out
        assert "set LOADTEST_TOKEN" in out.stderr, out.stderr
        out = lt("run", path, d=d, env={"LOADTEST_TOKEN": READ_TOKEN})
        assert out.returncode == 3 and "read token" in out.stderr, out
        assert READ_TOKEN not in out.stdout + out.stderr
        out = lt("-v", "run", path, "--wait", "--junit", os.path.join(TMP, "token.xml"), d=d,
                 env={"LOADTEST_TOKEN": WRITE_TOKEN})
        assert out.returncode == 0, out
        assert "Authorization: Bearer ***" in out.stderr, out.stderr
        run_id = out.stdout.splitlines()[0]
        for args in (["-v", "status", run_id], ["-v", "list"], ["-v", "status", run_id, "--json"],
                     ["-v", "cancel", run_id], ["-v", "compare", run_id, run_id]):
            o = lt(*args, d=d, env={"LOADTEST_TOKEN": WRITE_TOKEN})
            assert o.returncode == 0, (args, o)
            assert WRITE_TOKEN not in o.stdout + o.stderr, args
        assert WRITE_TOKEN not in out.stdout + out.stderr, "the token was printed"
        with open(os.path.join(TMP, "token.xml")) as f:
            assert WRITE_TOKEN not in f.read()
        out = lt("list", d=d, env={"LOADTEST_TOKEN": "wrong-token-0000000000000000"})
        assert out.returncode == 3 and "did not accept the token" in out.stderr, out
        out = lt("list", d=d, env={"LOADTEST_TOKEN": "bad\ntoken-with-newline"})
        assert out.returncode == 3 and "token-with-newline" not in out.stderr, out
    finally:
        d.stop()
    assert WRITE_TOKEN not in d.log_text()


def test_idempotency_key_replays_the_run():
    d, t = shared()
    key = "cli-test-key-%d" % os.getpid()
    path = spec_file(spec(t, duration=1))
    a = lt("run", path, "--idempotency-key", key, d=d)
    b = lt("run", path, "--idempotency-key", key, d=d)
    assert a.returncode == 0 and b.returncode == 0, (a, b)
    assert a.stdout == b.stdout, (a.stdout, b.stdout)
    assert "used before" in b.stderr, b.stderr
    c = lt("run", path, "--idempotency-key", key, "--set", "load.users=3", d=d)
    assert c.returncode == 3 and "conflict" in c.stderr, c
    d.wait_status(a.stdout.strip(), FINAL)
    # Without a key, two invocations are two runs.
    x = lt("run", path, d=d)
    y = lt("run", path, d=d)
    assert x.stdout != y.stdout
    d.wait_status(x.stdout.strip(), FINAL)
    d.wait_status(y.stdout.strip(), FINAL)


class FlakyServer:
    """Fake loadtestd: the first POST /v1/runs gets its connection closed without an answer
    (as if the answer was lost), the second a 503, the third 202. Records every request."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def read_request(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in
                   (ln.split(":", 1) for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(body) < n:
            body += conn.recv(65536)
        return lines[0], headers, body

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                req = self.read_request(conn)
                if req is None:
                    continue
                self.requests.append(req)
                n = len(self.requests)
                if n == 1:
                    continue  # close without answering
                if n == 2:
                    body = b'{"error":{"code":"unavailable","message":"store busy"}}'
                    status = "503 Service Unavailable"
                else:
                    body = json.dumps({"id": "r0000000000000000beef", "kind": "capacity",
                                       "status": "queued"}).encode()
                    status = "202 Accepted"
                conn.sendall(("HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\nConnection: close\r\n\r\n"
                              % (status, len(body))).encode() + body)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_post_retries_keep_one_idempotency_key():
    _, t = shared()
    f = FlakyServer()
    try:
        out = lt("run", spec_file(spec(t)), "--server", "http://127.0.0.1:%d" % f.port)
    finally:
        f.close()
    assert out.returncode == 0 and out.stdout == "r0000000000000000beef\n", out
    assert len(f.requests) == 3, f.requests
    keys = [h.get("idempotency-key") for _, h, _ in f.requests]
    assert keys[0] and keys[0] == keys[1] == keys[2], keys
    assert all(line.startswith("POST /v1/runs ") for line, _, _ in f.requests)
    assert len({b for _, _, b in f.requests}) == 1, "the body changed between attempts"
    assert out.stderr.count("retrying") == 2, out.stderr


def test_preset_on_a_daemon_without_presets():
    d, _ = shared()
    out = lt("run", "--preset", "smoke", "--set", "load.users=5", d=d)
    assert out.returncode == 3, out
    # A daemon without the route says so clearly; one with it names the unknown preset.
    assert "this daemon has no presets" in out.stderr or "preset" in out.stderr, out.stderr
    out = lt("run", "spec.json", "--preset", "smoke", d=d)
    assert out.returncode == 3, out


def test_run_preset_end_to_end():
    d, t = shared()
    name = "cli-preset-%d" % os.getpid()
    put = d.request("PUT", "/v1/presets/" + name,
                    body=spec(t, duration=5, users=1, rate=2, thresholds=LOOSE))
    assert put.status == 201, put
    junit = os.path.join(TMP, "preset.xml")
    out = lt("run", "--preset", name, "--set", "load.duration_s=1", "--set", "load.users=2",
             "--wait", "--junit", junit, d=d)
    assert out.returncode == 0, out
    run_id = out.stdout.splitlines()[0]
    doc = d.get("/v1/runs/" + run_id).json
    assert doc["preset"] == name and doc["name"] == name, doc
    assert doc["spec"]["load"]["duration_s"] == 1 and doc["spec"]["load"]["users"] == 2, doc
    assert doc["spec"]["load"]["rate_per_user"] == 2, doc  # from the preset
    assert os.path.exists(junit)
    out = lt("run", "--preset", name, "--set", "load.users=0", d=d)
    assert out.returncode == 3 and "/load/users" in out.stderr, out


# ---------------------------------------------------------------- terminal progress

def test_terminal_progress_is_one_redrawn_line():
    d, t = shared()
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("LOADTEST_TOKEN", None)
    p = subprocess.Popen([ARGS.loadtest, "--server", server_url(d), "run",
                          spec_file(spec(t, duration=3, thresholds=LOOSE)), "--wait"],
                         stdout=subprocess.PIPE, stderr=slave, env=e)
    os.close(slave)
    seen = b""
    deadline = time.time() + 60
    while time.time() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif p.poll() is not None:
            break
    out = p.communicate(timeout=30)[0].decode()
    os.close(master)
    assert p.returncode == 0, (out, seen)
    text = seen.decode("utf-8", "replace")
    assert text.count("\r\x1b[K") >= 3, text  # redrawn in place
    assert "running" in text and "requests" in text and "rps" in text and "p99" in text, text
    assert text.count("\n") <= 2, text  # one line, finished with a newline
    assert "\r" not in out, out  # stdout is not a terminal here


def main():
    tests = [test_help_version_usage, test_run_wait_passes, test_run_wait_fails_verdict,
             test_run_from_stdin, test_set_overrides_reach_stored_spec,
             test_json_output_matches_get, test_junit_pass_fail_and_escaping,
             test_junit_cancelled_run_is_an_error, test_junit_for_unreachable_daemon,
             test_cancel_from_another_process_exits_2, test_interrupt_cancels_the_run,
             test_timeout_cancels_and_exits_2, test_unreachable_server_exits_3,
             test_bad_specs_exit_3_with_the_field, test_status_exit_codes_and_cancel,
             test_list_table_json_and_cursor, test_compare_p99_regression,
             test_token_sent_and_never_printed, test_idempotency_key_replays_the_run,
             test_post_retries_keep_one_idempotency_key, test_preset_on_a_daemon_without_presets,
             test_run_preset_end_to_end,
             test_terminal_progress_is_one_redrawn_line]
    try:
        rc = ltd.run_tests(tests)
    finally:
        if "daemon" in _env:
            _env["daemon"].stop()
        if "target" in _env:
            _env["target"].stop()
        shutil.rmtree(TMP, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
