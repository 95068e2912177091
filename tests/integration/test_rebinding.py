"""DNS rebinding end to end (run by in_netns_hosts.sh: a network namespace with only lo, which also
carries 10.0.0.1 and 169.254.169.254, and a private /etc/hosts this test rewrites). Listeners on
those addresses count every connection they accept; each must stay at 0.

- Specs aimed at 10.0.0.1 or 169.254.169.254 directly are refused at POST (403).
- A name that passes the POST-time check but resolves to a denied address is refused at connect,
  after DNS: capacity (both engines), ratelimit and generate (PostgreSQL DSN) runs end as error
  forbidden_target, and the listeners saw nothing.
    * default allowlist: `localhost` rebound to 10.0.0.1 / 169.254.169.254 in /etc/hosts;
    * operator allowlist with a name entry (`--allow-target meta.test:PORT`) whose name
      resolves to 169.254.169.254 (metadata is denied unless an address entry names it)."""

import os
import socket
import sys
import threading
import time

import ltd

ARGS = ltd.parse_args()
SLACK_S = 10


class Listener:
    """Accepts and counts connections on (addr, port) in a thread; answers nothing."""

    def __init__(self, addr, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            c.close()

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


def set_hosts(text):
    path = os.environ.get("LTD_HOSTS_FILE")
    assert path, "run me through in_netns_hosts.sh"
    assert os.stat(path).st_ino == os.stat("/etc/hosts").st_ino, "/etc/hosts is not the private copy"
    with open(path, "w") as f:  # same inode: the bind mount keeps showing it
        f.write(text)


def capacity(url, engine="auto"):
    s = ltd.capacity_spec(url, duration=1, users=2, rate=5, timeout_ms=1000)
    s["load"]["engine"] = engine
    return s


def ratelimit(url):
    return {"kind": "ratelimit", "target": {"url": url, "timeout_ms": 1000},
            "burst": {"expect_limit": 5, "max_requests": 20},
            "realistic": {"agents": 1, "requests_min": 1, "requests_max": 2, "window_s": 1}}


# The DSN password of the generate specs: it must appear in no answer and no log line.
DSN_PASSWORD = "pw-4b1d9e-never-shown"


def generate(host, port):
    return {"kind": "generate",
            "database": {"dsn": "postgresql://lt:%s@%s:%d/lt" % (DSN_PASSWORD, host, port)},
            "table": "traces", "rows": 10, "dim": 4, "base_vectors": 2,
            "index": {"build": "none"}}


def expect_refused_at_connect(d, body, what):
    a = d.post("/v1/runs", body)
    assert a.status == 202, (what, a)
    doc = d.wait_status(a.json["id"], ltd.FINISHED, timeout=SLACK_S)
    assert doc["status"] == "error", (what, doc)
    assert doc["error"]["code"] == "forbidden_target", (what, doc["error"])
    assert DSN_PASSWORD not in a.raw.decode() and DSN_PASSWORD not in str(doc), what
    if body["kind"] == "capacity":
        res = doc["result"]
        assert res["forbidden_by_allowlist"] == res["requests"] > 0, (what, res)
    print("%-40s error %s: %s" % (what, doc["error"]["code"], doc["error"]["message"]), flush=True)


def test_direct_addresses_refused_at_post():
    d = ltd.Daemon(ARGS, extra=["--allow-target", "rebind.test:8080"])
    d0 = ltd.Daemon(ARGS)
    try:
        for daemon in (d, d0):
            for url in ("http://10.0.0.1:8080/", "http://169.254.169.254/",
                        "http://169.254.169.254/latest/meta-data/"):
                for body in (capacity(url), ratelimit(url)):
                    a = daemon.post("/v1/runs", body)
                    assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
                    assert a.json["error"]["field"] == "/target/url", a
            for host in ("10.0.0.1", "169.254.169.254"):
                a = daemon.post("/v1/runs", generate(host, 5432))
                assert a.status == 403 and a.json["error"]["code"] == "forbidden_target", a
            assert daemon.get("/v1/runs").json["runs"] == []
        # A name not on the list is refused at POST whatever it resolves to.
        set_hosts("127.0.0.1 localhost\n10.0.0.1 other.test\n")
        assert d0.post("/v1/runs", capacity("http://other.test:8080/")).status == 403
        assert d.post("/v1/runs", capacity("http://other.test:8080/")).status == 403
    finally:
        d.stop()
        d0.stop()


def test_localhost_rebound_refused_at_connect():
    """Default allowlist (loopback, localhost): /etc/hosts says localhost is 10.0.0.1, then
    169.254.169.254. No run may reach them."""
    for addr in ("10.0.0.1", "169.254.169.254"):
        lis = Listener(addr)
        set_hosts("%s localhost\n" % addr)
        d = ltd.Daemon(ARGS)
        try:
            url = "http://localhost:%d/" % lis.port
            for engine in ("auto", "libcurl"):
                body = capacity(url, engine)
                a = d.post("/v1/runs", body)
                assert a.status == 202, a
                doc = d.wait_status(a.json["id"], ltd.FINISHED, timeout=SLACK_S)
                # libcurl may resolve localhost to loopback itself (never asking /etc/hosts):
                # then nothing listens there and the run is unreachable; either way it errs.
                assert doc["status"] == "error", doc
                assert doc["error"]["code"] in ("forbidden_target", "io_error"), doc
                print("localhost->%-16s capacity %-7s error %s: %s" % (
                    addr, engine, doc["error"]["code"], doc["error"]["message"]), flush=True)
            a = d.post("/v1/runs", ratelimit(url))
            doc = d.wait_status(a.json["id"], ltd.FINISHED, timeout=SLACK_S)
            assert doc["status"] == "error", doc
            print("localhost->%-16s ratelimit error %s: %s" % (
                addr, doc["error"]["code"], doc["error"]["message"]), flush=True)
            expect_refused_at_connect(d, generate("localhost", lis.port),
                                      "localhost->%s generate" % addr)
            time.sleep(0.3)
            assert lis.count == 0, "%d connections reached %s" % (lis.count, addr)
        finally:
            d.stop()
            lis.stop()
            set_hosts("127.0.0.1 localhost\n")


def test_allowed_name_resolving_to_metadata_refused_at_connect():
    lis = Listener("169.254.169.254")
    set_hosts("127.0.0.1 localhost\n169.254.169.254 meta.test\n")
    d = ltd.Daemon(ARGS, extra=["--allow-target", "meta.test:%d" % lis.port])
    try:
        url = "http://meta.test:%d/latest/meta-data/" % lis.port
        for engine in ("auto", "libcurl"):
            expect_refused_at_connect(d, capacity(url, engine), "meta.test capacity " + engine)
        expect_refused_at_connect(d, ratelimit(url), "meta.test ratelimit")
        expect_refused_at_connect(d, generate("meta.test", lis.port), "meta.test generate")
        time.sleep(0.3)
        assert lis.count == 0, "%d connections reached 169.254.169.254" % lis.count
        assert d.get("/healthz").status == 200
        log = d.log_text()
        assert DSN_PASSWORD not in log, "a DSN password appeared in the log"
    finally:
        d.stop()
        lis.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_direct_addresses_refused_at_post,
                            test_localhost_rebound_refused_at_connect,
                            test_allowed_name_resolving_to_metadata_refused_at_connect]))
