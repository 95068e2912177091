"""Black-box tests of the REST surface that is not kind-specific: health, version, the error
shape with the right JSON pointer for a barrage of bad requests, 404/405, and that a bad request
changes nothing stored and never stops the daemon."""

import hashlib
import sqlite3
import sys
import time

import ltd

ARGS = ltd.parse_args()


def capacity(**over):
    spec = {"kind": "capacity", "name": "api-test",
            "target": {"url": "http://127.0.0.1:9/never"},
            "load": {"users": 1, "rate_per_user": 1, "duration_s": 1}}
    for k, v in over.items():
        spec[k] = v
    return spec


def store_digest(db):
    """A digest of every stored row, read straight from the SQLite file."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    h = hashlib.sha256()
    for table in ("runs", "points"):
        for row in con.execute("SELECT * FROM %s ORDER BY 1, 2" % table):
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def test_health_and_version():
    d = ltd.Daemon(ARGS)
    try:
        a = d.get("/healthz")
        assert a.status == 200 and a.json == {"status": "ok"}, a
        a = d.get("/v1/version")
        assert a.status == 200 and a.json["api"] == "v1" and a.json["version"], a
        a = d.request("HEAD", "/healthz")
        assert a.status == 200 and a.raw == b"", a
    finally:
        d.stop()


# (method, path, body or raw bytes, status, code, field or None)
BAD = [
    ("POST", "/v1/runs", b"{", 400, "invalid_json", None),
    ("POST", "/v1/runs", b"", 400, "invalid_json", None),
    ("POST", "/v1/runs", b"\xff\xfe", 400, "invalid_json", None),
    ("POST", "/v1/runs", b'{"kind":"capacity","kind":"capacity"}', 400, "invalid_json", None),
    ("POST", "/v1/runs", [], 400, "invalid_spec", None),
    ("POST", "/v1/runs", "capacity", 400, "invalid_spec", None),
    ("POST", "/v1/runs", {}, 400, "invalid_spec", "/kind"),
    ("POST", "/v1/runs", {"kind": 5}, 400, "invalid_spec", "/kind"),
    ("POST", "/v1/runs", {"kind": "nope"}, 400, "invalid_spec", "/kind"),
    ("POST", "/v1/runs", capacity(name=7), 400, "invalid_spec", "/name"),
    ("POST", "/v1/runs", capacity(name="x" * 500), 400, "invalid_spec", "/name"),
    ("POST", "/v1/runs", capacity(extra=1), 400, "invalid_spec", "/extra"),
    ("POST", "/v1/runs", capacity(target=None), 400, "invalid_spec", "/target"),
    ("POST", "/v1/runs", capacity(target={"url": "ftp://127.0.0.1/"}), 400, "invalid_spec",
     "/target/url"),
    ("POST", "/v1/runs", capacity(target={"url": "http://127.0.0.1/", "timeout_ms": -5}), 400,
     "invalid_spec", "/target/timeout_ms"),
    ("POST", "/v1/runs", capacity(load={"users": -1}), 400, "invalid_spec", "/load/users"),
    ("POST", "/v1/runs", capacity(load={"users": "20"}), 400, "invalid_spec", "/load/users"),
    ("POST", "/v1/runs", capacity(load={"users": 10 ** 12}), 400, "invalid_spec", "/load/users"),
    ("POST", "/v1/runs", capacity(load={"users": 1.5}), 400, "invalid_spec", "/load/users"),
    ("POST", "/v1/runs", capacity(load={"duration_s": 0}), 400, "invalid_spec",
     "/load/duration_s"),
    ("POST", "/v1/runs", capacity(load={"userz": 3}), 400, "invalid_spec", "/load/userz"),
    ("POST", "/v1/runs", capacity(load={"model": "sideways"}), 400, "invalid_spec",
     "/load/model"),
    ("POST", "/v1/runs", capacity(thresholds={"p98_ms": 5}), 400, "invalid_spec",
     "/thresholds/p98_ms"),
    ("POST", "/v1/runs", capacity(thresholds={"p99_ms": "fast"}), 400, "invalid_spec",
     "/thresholds/p99_ms"),
    ("GET", "/v1/runs/r0000000000000000000", None, 404, "not_found", None),
    ("GET", "/v1/runs/..%2f..%2fetc", None, 404, "not_found", None),
    ("GET", "/v1/runs/" + "a" * 300, None, 404, "not_found", None),
    ("DELETE", "/v1/runs/r0000000000000000000", None, 404, "not_found", None),
    ("POST", "/v1/runs/r0000000000000000000/cancel", None, 404, "not_found", None),
    ("GET", "/v1/runs/r0000000000000000000/timeseries", None, 404, "not_found", None),
    ("GET", "/nope", None, 404, "not_found", None),
    ("PUT", "/v1/runs", {}, 405, "method_not_allowed", None),
    ("PATCH", "/v1/runs/r0000000000000000000", {}, 405, "method_not_allowed", None),
    ("GET", "/v1/runs/r0000000000000000000/cancel", None, 405, "method_not_allowed", None),
    ("GET", "/v1/runs?limit=0", None, 400, "invalid_parameter", "limit"),
    ("GET", "/v1/runs?limit=abc", None, 400, "invalid_parameter", "limit"),
    ("GET", "/v1/runs?status=bogus", None, 400, "invalid_parameter", "status"),
    ("GET", "/v1/runs?kind=bogus", None, 400, "invalid_parameter", "kind"),
    ("GET", "/v1/runs?cursor=-4", None, 400, "invalid_parameter", "cursor"),
    ("GET", "/v1/runs?stauts=passed", None, 400, "invalid_parameter", "stauts"),
]


def test_bad_request_barrage():
    d = ltd.Daemon(ARGS)
    try:
        # Some state first, so "nothing changes" means something.
        a = d.post("/v1/runs", capacity())
        assert a.status == 202, a
        run_id = a.json["id"]
        d.wait_status(run_id, {"passed", "failed", "error"}, timeout=30)
        before = store_digest(d.db)
        listing = d.get("/v1/runs").json
        for method, path, body, status, code, field in BAD:
            if isinstance(body, bytes):
                a = d.request(method, path, raw_body=body,
                              headers={"Content-Type": "application/json"})
            else:
                a = d.request(method, path, body=body)
            where = "%s %s %r" % (method, path, body if not isinstance(body, bytes) else body[:60])
            assert a.status == status, "%s: expected %d, got %r" % (where, status, a)
            assert a.json["error"]["code"] == code, "%s: %r" % (where, a)
            if field is not None:
                assert a.json["error"].get("field") == field, "%s: field %r, want %r" % (
                    where, a.json["error"].get("field"), field)
            if status == 405:
                assert a.header("Allow"), "%s: 405 without Allow" % where
            assert d.get("/healthz").status == 200, "daemon stopped serving after " + where
        assert store_digest(d.db) == before, "a bad request changed stored state"
        assert d.get("/v1/runs").json == listing
        # Deleting a finished run works; a second delete is 404.
        assert d.request("DELETE", "/v1/runs/" + run_id).status == 204
        assert d.request("DELETE", "/v1/runs/" + run_id).status == 404
    finally:
        d.stop()


def test_errors_do_not_leak_between_keepalive_requests():
    """After a 413 (refused before its body, on its own connection, which then closes) and a 400
    on a kept-alive connection, the next request still works."""
    d = ltd.Daemon(ARGS)
    try:
        a = ltd.send_partial(d.port, "POST", "/v1/runs", {"Content-Length": 2 << 20}, b"x" * 1024)
        assert a is not None and a.status == 413, a
        d.request("POST", "/v1/runs", raw_body=b"{")
        a = d.get("/v1/runs?limit=5")
        assert a.status == 200 and a.json["runs"] == [], a
    finally:
        d.stop()


def test_bodies_refused_before_they_are_read():
    """A Content-Length over the cap gets 413 before the body is sent (only 1 KiB of 2 MiB went
    out); so do an unknown route and a wrong method that announce a body; a chunked body that
    grows past the cap ends the connection instead of being read without end."""
    import socket
    d = ltd.Daemon(ARGS)
    api = ltd.openapi(ARGS.source)
    try:
        big = {"Content-Length": 2 << 20, "Content-Type": "application/json"}
        for method, path, status in (("POST", "/v1/runs", 413), ("POST", "/nope", 404),
                                     ("PUT", "/v1/runs", 405)):
            a = ltd.send_partial(d.port, method, path, big, b"{" + b" " * 1023)
            assert a is not None and a.status == status, (method, path, a)
            assert a.json["error"]["code"] in ("payload_too_large", "not_found",
                                               "method_not_allowed"), a
            if status == 413:
                api.validate(method, path, a.status, dict(a.headers), a.raw)
        # The Slack route has its own, smaller cap (SLACK_FORM_MAX_BYTES, 64 KiB), checked before
        # the body whether or not chat-ops is configured (it is not here: a body within the cap
        # reaches the handler, which answers 404).
        form = {"Content-Length": 65537, "Content-Type": "application/x-www-form-urlencoded"}
        a = ltd.send_partial(d.port, "POST", "/v1/chatops/slack", form, b"text=")
        assert a is not None and a.status == 413, a
        api.validate("POST", "/v1/chatops/slack", a.status, dict(a.headers), a.raw)
        assert "65536" in a.json["error"]["message"], a
        a = d.post("/v1/chatops/slack", raw_body=b"text=" + b"a" * 65531,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert a.status == 404, a
        # Chunked: past 1 MiB the daemon stops reading; 64 MiB can never all be sent.
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\n\r\n")
        sent, chunk = 0, b"10000\r\n" + b" " * 65536 + b"\r\n"
        try:
            while sent < (64 << 20):
                s.sendall(chunk)
                sent += 65536
        except OSError:
            pass
        finally:
            s.close()
        assert sent < (64 << 20), "a 64 MiB chunked body was read to the end"
        deadline = time.time() + 10
        while "status=413" not in d.log_text() and time.time() < deadline:
            time.sleep(0.05)
        log = [line for line in d.log_text().splitlines() if "path=/v1/runs status=413" in line]
        assert any("aborted=1" in line for line in log), log
        # Each refusal with a body read none of it.
        assert sum("bytes_in=0" in line for line in log) >= 1, log
        assert d.get("/healthz").status == 200
    finally:
        d.stop()


def test_cli_flags_and_env():
    import subprocess
    out = subprocess.run([ARGS.loadtestd, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("loadtestd "), out
    out = subprocess.run([ARGS.loadtestd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "LOADTESTD_MAX_QUEUED_RUNS" in out.stdout, out
    out = subprocess.run([ARGS.loadtestd, "--max-concurrent-runs", "0"], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "max-concurrent-runs" in out.stderr, out
    out = subprocess.run([ARGS.loadtestd, "--bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "--bogus" in out.stderr, out
    out = subprocess.run([ARGS.loadtestd, "--listen", "0.0.0.0:0"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 2 and "loopback" in out.stderr, out
    # The environment sets what the flags would; a bad value is refused by name.
    out = subprocess.run([ARGS.loadtestd], capture_output=True, text=True,
                         env={"LOADTESTD_MAX_QUEUED_RUNS": "-3"})
    assert out.returncode == 2 and "max-queued-runs" in out.stderr, out
    d = ltd.Daemon(ARGS, env={"LOADTESTD_MAX_CONCURRENT_RUNS": "3"})
    try:
        assert "max_concurrent_runs=3" in d.log_text()
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_health_and_version, test_bad_request_barrage,
                            test_errors_do_not_leak_between_keepalive_requests,
                            test_bodies_refused_before_they_are_read,
                            test_cli_flags_and_env]))
