"""Black-box tests of what keeps loadtestd from becoming an open amplifier: bearer tokens
(401/403, /healthz open, tokens never logged), the refusal to serve beyond loopback without
tokens, and the target allowlist checked at POST time (403 forbidden_target naming the field).
No test here sends a packet anywhere: denied targets are refused before any connection."""

import os
import subprocess
import sys
import tempfile

import ltd

ARGS = ltd.parse_args()
READ = "read-token-0123456789abcdef"
WRITE = "write-token-fedcba9876543210"


def token_file():
    fd, path = tempfile.mkstemp(prefix="ltd-tokens-")
    with os.fdopen(fd, "w") as f:
        f.write("# tokens for the test\nread %s\nwrite %s   # the CI token\n\n" % (READ, WRITE))
    return path


def spec(url):
    return {"kind": "capacity", "target": {"url": url},
            "load": {"users": 1, "rate_per_user": 1, "duration_s": 1}}


def test_tokens():
    path = token_file()
    d = ltd.Daemon(ARGS, extra=["--token-file", path])
    try:
        assert d.get("/healthz").status == 200
        a = d.get("/v1/runs")
        assert a.status == 401 and a.json["error"]["code"] == "unauthorized", a
        assert a.header("WWW-Authenticate", ).startswith("Bearer"), a
        a = d.get("/v1/runs", headers={"Authorization": "Bearer wrong-token-000000000000"})
        assert a.status == 401, a
        a = d.get("/v1/runs", headers={"Authorization": "Basic " + READ})
        assert a.status == 401, a
        a = d.get("/v1/runs", headers={"Authorization": "Bearer " + READ})
        assert a.status == 200, a
        a = d.post("/v1/runs", spec("http://127.0.0.1:9/"),
                   headers={"Authorization": "Bearer " + READ})
        assert a.status == 403 and a.json["error"]["code"] == "forbidden", a
        a = d.post("/v1/runs", spec("http://127.0.0.1:9/"),
                   headers={"Authorization": "Bearer " + WRITE})
        assert a.status == 202, a
        run_id = a.json["id"]
        a = d.request("DELETE", "/v1/runs/" + run_id, headers={"Authorization": "Bearer " + READ})
        assert a.status == 403, a
        a = d.get("/v1/runs/" + run_id, headers={"Authorization": "bearer " + WRITE})
        assert a.status == 200, a
    finally:
        d.stop()
        log = d.log_text()
        os.unlink(path)
    assert READ not in log and WRITE not in log, "a token appeared in the log"
    assert "auth=bearer" in log and "tokens=2" in log


def test_unauthorized_bodies_are_not_read():
    """A 2 MiB body without a token (or with a read token on a write route) is refused before it
    is read: the answer arrives after only 1 KiB of it was sent, and the daemon logs bytes_in=0."""
    path = token_file()
    d = ltd.Daemon(ARGS, extra=["--token-file", path])
    api = ltd.openapi(ARGS.source)
    try:
        big = {"Content-Length": 2 << 20, "Content-Type": "application/json"}
        for extra, status in (({}, 401), ({"Authorization": "Bearer wrong-token-0000000000"}, 401),
                              ({"Authorization": "Bearer " + READ}, 403)):
            a = ltd.send_partial(d.port, "POST", "/v1/runs", dict(big, **extra), b"{" * 1024)
            assert a is not None and a.status == status, (extra.keys(), a)
            api.validate("POST", "/v1/runs", a.status, dict(a.headers), a.raw)
            if status == 401:
                assert a.header("WWW-Authenticate").startswith("Bearer"), a
        lines = [x for x in d.log_text().splitlines() if "path=/v1/runs status=40" in x]
        assert len(lines) == 3 and all("bytes_in=0" in x for x in lines), lines
        # Without a body, a refusal keeps the connection: the next request on it is answered.
        assert d.get("/v1/runs").status == 401
        assert d.get("/healthz").status == 200
    finally:
        d.stop()
        os.unlink(path)


def test_bad_token_files_refused():
    for content, why in (("read short\n", "16"), ("admin %s\n" % WRITE, "role"),
                         ("# nothing\n", "no token"), ("write a b c\n", "expected")):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            f.write(content)
        out = subprocess.run([ARGS.loadtestd, "--token-file", path, "--listen", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=10)
        os.unlink(path)
        assert out.returncode == 2 and why in out.stderr, (content, out)
        assert WRITE not in out.stderr
    out = subprocess.run([ARGS.loadtestd, "--token-file", "/nonexistent/tokens"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "cannot open" in out.stderr, out


def test_no_tokens_means_loopback_only():
    for addr in ("0.0.0.0:0", "[::]:0", "192.0.2.1:0"):
        out = subprocess.run([ARGS.loadtestd, "--listen", addr], capture_output=True,
                             text=True, timeout=10)
        assert out.returncode == 2 and "token" in out.stderr, (addr, out)


DENIED = [
    ("http://10.0.0.1/", "/target/url"),
    ("http://169.254.169.254/latest/meta-data/", "/target/url"),
    ("http://[fd00:ec2::254]/", "/target/url"),
    ("http://[::ffff:169.254.169.254]/", "/target/url"),
    ("http://[::ffff:127.0.0.1]:8080/", "/target/url"),
    ("http://[fe80::1%25eth0]/", "/target/url"),
    ("http://metadata.google.internal/", "/target/url"),
    ("http://localhost.evil.example/", "/target/url"),
    ("http://167772161/", "/target/url"),  # 10.0.0.1 written as one number
]


def test_default_allowlist_is_loopback():
    d = ltd.Daemon(ARGS)
    try:
        for url, field in DENIED:
            a = d.post("/v1/runs", spec(url))
            assert a.status in (400, 403), (url, a)
            if a.status == 403:
                assert a.json["error"]["code"] == "forbidden_target", (url, a)
                assert a.json["error"]["field"] == field, (url, a)
        # The plain denials must be 403 forbidden_target, not just any 4xx.
        for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://metadata.google.internal/"):
            assert d.post("/v1/runs", spec(url)).status == 403, url
        assert d.get("/v1/runs").json["runs"] == [], "a refused run was stored"
        for url in ("http://127.0.0.1:9/", "http://localhost:9/", "http://[::1]:9/"):
            a = d.post("/v1/runs", spec(url))
            assert a.status == 202, (url, a)
    finally:
        d.stop()


def test_operator_allowlist():
    d = ltd.Daemon(ARGS, extra=["--allow-target", "127.0.0.1:9", "--allow-target",
                                "*.svc.test"])
    try:
        assert d.post("/v1/runs", spec("http://127.0.0.1:9/")).status == 202
        a = d.post("/v1/runs", spec("http://127.0.0.1:10/"))
        assert a.status == 403 and "127.0.0.1 port 10" in a.json["error"]["message"], a
        assert d.post("/v1/runs", spec("http://localhost:9/")).status == 403
    finally:
        d.stop()
    out = subprocess.run([ARGS.loadtestd, "--allow-target", "10.0.0.0/40"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 2 and "10.0.0.0/40" in out.stderr, out


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_tokens, test_unauthorized_bodies_are_not_read,
                            test_bad_token_files_refused,
                            test_no_tokens_means_loopback_only, test_default_allowlist_is_loopback,
                            test_operator_allowlist]))
