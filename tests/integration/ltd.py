"""Helpers for integration tests: start the real loadtestd (and test targets) on free loopback
ports, speak HTTP to them, check every answer against openapi/openapi.yaml, stop them by PID.

Every test script takes --loadtestd BINARY --targets DIR --source REPO_ROOT (CTest passes them)
and ends with a line "N passed, N failed"."""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

_openapi = None


def openapi(source):
    """The OpenApi checker for the repo's spec, loaded once."""
    global _openapi
    if _openapi is None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from openapi_check import OpenApi  # noqa: E402
        _openapi = OpenApi(os.path.join(source, "openapi", "openapi.yaml"))
    return _openapi


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadtestd", required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--source", required=True)
    args, _ = ap.parse_known_args()
    return args


class Answer:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "Answer(%d, %r)" % (self.status, self.raw[:300])


class Daemon:
    """One loadtestd process on 127.0.0.1:<free port>, with its own database unless given one."""

    def __init__(self, args, db=None, extra=(), env=None, check_schema=True):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="ltd-it-")
        self.db = db or os.path.join(self.tmp, "loadtestd.db")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        self.check_schema = check_schema
        self.conn = None
        cmd = [args.loadtestd, "--listen", "127.0.0.1:0", "--db", self.db] + list(extra)
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        # The API's own rate limit (--api-rate) is off unless a test asks for it (a flag wins
        # over the environment): tests of other things send bursts a real client would not.
        full_env.setdefault("LOADTESTD_API_RATE", "0")
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=full_env)
        self.port = None
        deadline = time.time() + 10
        while time.time() < deadline:
            text = self.log_text()
            for line in text.splitlines():
                if "event=listening" in line:
                    self.port = int(line.split("port=")[1].split()[0])
            if self.port:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("loadtestd exited %s: %s" % (self.proc.returncode, text))
            time.sleep(0.02)
        if not self.port:
            self.kill()
            raise RuntimeError("loadtestd did not start: " + self.log_text())
        self.conn = None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None, raw_body=None, timeout=30):
        """One request on a keep-alive connection; reconnects once if the daemon closed it."""
        hdrs = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                ans = Answer(r.status, r.getheaders(), r.read())
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if self.check_schema and method != "HEAD":  # HEAD answers GET's headers, no body
            openapi(self.args.source).validate(method, path.split("?")[0], ans.status,
                                               dict(ans.headers), ans.raw)
        if ans.status >= 400:
            assert ans.json and "error" in ans.json, "error answer without error shape: %r" % ans
            e = ans.json["error"]
            assert isinstance(e.get("code"), str) and isinstance(e.get("message"), str), ans
        return ans

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def wait_status(self, run_id, statuses, timeout=30):
        """Polls the run until its status is one of statuses; returns the document."""
        deadline = time.time() + timeout
        doc = None
        while time.time() < deadline:
            doc = self.get("/v1/runs/" + run_id).json
            if doc["status"] in statuses:
                return doc
            time.sleep(0.05)
        raise AssertionError("run %s still %s after %ss" % (run_id, doc and doc["status"], timeout))

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends sig and waits; returns (exit code, seconds it took)."""
        if self.conn:
            self.conn.close()
            self.conn = None
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("loadtestd did not exit within %ss of signal %d" % (timeout, sig))
        return rc, time.time() - t0

    def clone(self):
        """A second client of the same daemon with its own keep-alive connection, for another
        thread (a Daemon's connection must not be shared between threads)."""
        c = Daemon.__new__(Daemon)
        c.__dict__.update(self.__dict__)
        c.conn = None
        return c

    def points(self, run_id, since=0):
        """The run's per-second points with t > since."""
        a = self.get("/v1/runs/%s/timeseries?since=%d" % (run_id, since))
        assert a.status == 200, a
        return a.json["points"]

    def wait_points(self, run_id, n, timeout=15):
        """Polls until the run has at least n points; returns them."""
        deadline = time.time() + timeout
        pts = []
        while time.time() < deadline:
            pts = self.points(run_id)
            if len(pts) >= n:
                return pts
            time.sleep(0.1)
        raise AssertionError("run %s has %d points after %ss, wanted %d" % (run_id, len(pts),
                                                                           timeout, n))

    def rss_kib(self):
        """The daemon's resident set size (VmRSS) in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.conn:
            self.conn.close()
            self.conn = None


def free_port():
    """A loopback port nothing listens on (bound once, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def send_partial(port, method, path, headers, body_part=b"", timeout=10):
    """Sends a request's head (headers: dict, e.g. a Content-Length larger than body_part) and
    only body_part of its body on a new connection, then reads what the daemon answers before the
    rest of the body: returns an Answer, or None when the connection ended without an answer.
    An answer here proves the daemon decided without reading the rest of the body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
        s.sendall(head.encode() + body_part)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
            top, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                hdrs = [tuple(x.strip() for x in line.split(":", 1))
                        for line in top.decode("latin-1").split("\r\n")[1:]]
                n = int(dict((k.lower(), v) for k, v in hdrs).get("content-length", "0"))
                if len(rest) >= n:
                    return Answer(int(top.split(b" ", 2)[1]), hdrs, rest[:n])
        return None
    finally:
        s.close()


def capacity_spec(url, duration=2, users=2, rate=10, name=None, timeout_ms=None, **extra):
    """A capacity spec aimed at url; extra keys are set at the top level (e.g. thresholds)."""
    s = {"kind": "capacity", "target": {"url": url},
         "load": {"users": users, "rate_per_user": rate, "duration_s": duration}}
    if name:
        s["name"] = name
    if timeout_ms is not None:
        s["target"]["timeout_ms"] = timeout_ms
    s.update(extra)
    return s


FINISHED = {"passed", "failed", "error", "cancelled", "interrupted"}


class Target:
    """A test target binary from tests/targets that prints PORT=<n> on stdout."""

    def __init__(self, args, name, extra=()):
        self.proc = subprocess.Popen([os.path.join(args.targets, name), "--port", "0"] +
                                     list(extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT="):
            self.stop()
            raise RuntimeError("%s did not start: %r" % (name, line))
        self.port = int(line.strip().split("=")[1])
        self.base = "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_tests(tests):
    """Runs test functions in order, prints one line each and the tally; returns the exit code."""
    passed = failed = 0
    for fn in tests:
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("ok   %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print("FAIL %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0
