"""The database's file system full or read-only, seen through the API (run by in_mountns.sh: the
database lives on a small tmpfs mounted in a private mount namespace).

Disk full: POST /v1/runs answers 503 `unavailable` with a message a person understands, reads
keep answering, the daemon does not crash, a run that ends while the disk is full still reaches
its final status once there is room, and POST works again (202, run to verdict) as soon as the
filler file is gone. Read-only: Linux refuses to remount a file system read-only while a file on
it is open for writing (EBUSY), so a daemon can only meet a read-only database at start: it
refuses to start with a clear error (exit 1, no crash); remounted read-write, it starts."""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time

import ltd

ARGS = ltd.parse_args()


def mount_tmpfs(size):
    assert os.environ.get("LTD_PRIVATE_MOUNTNS") == "1", "run me through in_mountns.sh"
    path = tempfile.mkdtemp(prefix="ltd-fs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "ltd-test", path], check=True)
    return path


def fill(path):
    """Writes a filler file until the file system says ENOSPC; returns the file's path."""
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        try:
            while True:  # the last few bytes too
                f.write(b"\0" * 512)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def test_disk_full_503_then_recovers():
    fs = mount_tmpfs("3m")
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, db=os.path.join(fs, "loadtestd.db"),
                   extra=["--max-concurrent-runs", "4", "--max-queued-runs", "100"])
    url = t.base + "/fixed?ms=1"
    try:
        done = d.post("/v1/runs", ltd.capacity_spec(url, duration=1)).json["id"]
        d.wait_status(done, {"passed"})
        # A run that will end while the disk is full, and one that outlives the full period.
        ending = d.post("/v1/runs", ltd.capacity_spec(url, duration=2, name="ending")).json["id"]
        long_run = d.post("/v1/runs", ltd.capacity_spec(url, duration=12, rate=5)).json["id"]
        d.wait_status(ending, {"running"})
        d.wait_status(long_run, {"running"})
        filler = fill(fs)
        t_full = time.time()
        # SQLite reuses WAL space it already has, so the first few inserts may still fit.
        refused = None
        accepted_while_filling = []
        for _ in range(100):
            a = d.post("/v1/runs", ltd.capacity_spec(url, duration=1))
            if a.status == 202:
                accepted_while_filling.append(a.json["id"])
                continue
            refused = a
            break
        assert refused is not None, "100 POSTs accepted on a full disk"
        assert refused.status == 503, refused
        err = refused.json["error"]
        assert err["code"] == "unavailable", refused
        print("first 503 after %d accepted POSTs: %r" % (len(accepted_while_filling),
                                                        err["message"]), flush=True)
        for _ in range(5):
            a = d.post("/v1/runs", ltd.capacity_spec(url, duration=1))
            assert a.status == 503 and a.json["error"]["code"] == "unavailable", a
        # Reads go on; the daemon is alive.
        assert d.get("/healthz").status == 200
        assert d.get("/v1/runs").status == 200
        assert d.get("/v1/runs/" + done).json["status"] == "passed"
        for run_id in accepted_while_filling:
            assert d.get("/v1/runs/" + run_id).status == 200
        assert d.proc.poll() is None
        # Keep the disk full until `ending` has tried to store its final status.
        while time.time() < t_full + 3:
            assert d.get("/v1/runs/%s/timeseries" % long_run).status == 200
            time.sleep(0.2)
        assert d.proc.poll() is None, d.log_text()[-2000:]
        os.unlink(filler)
        a = d.post("/v1/runs", ltd.capacity_spec(url, duration=1))
        assert a.status == 202, a
        doc = d.wait_status(a.json["id"], {"passed"}, timeout=30)
        assert doc["result"]["requests"] > 0
        # The run that ended on a full disk reaches a final status once there is room.
        doc = d.wait_status(ending, ltd.FINISHED - {"interrupted"}, timeout=15)
        print("run that ended on the full disk: %s" % doc["status"], flush=True)
        doc = d.wait_status(long_run, ltd.FINISHED - {"interrupted"}, timeout=30)
        assert doc["result"]["requests"] > 0, doc
        for run_id in accepted_while_filling:
            d.wait_status(run_id, ltd.FINISHED - {"interrupted"}, timeout=30)
        log = d.log_text()
        assert "what=" in log and "error=unavailable" in log, log[-2000:]
        rc, _ = d.stop()
        assert rc == 0, rc
    finally:
        d.kill()
        t.stop()
        subprocess.run(["umount", fs])


def test_read_only_at_start_is_refused_cleanly():
    fs = mount_tmpfs("3m")
    db = os.path.join(fs, "loadtestd.db")
    try:
        d = ltd.Daemon(ARGS, db=db)
        run_id = d.post("/v1/runs", ltd.capacity_spec("http://127.0.0.1:9/")).json["id"]
        d.wait_status(run_id, ltd.FINISHED)
        assert d.stop()[0] == 0
        subprocess.run(["mount", "-o", "remount,ro", fs], check=True)
        out = subprocess.run([ARGS.loadtestd, "--listen", "127.0.0.1:0", "--db", db],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 1, (out.returncode, out.stderr)  # not a signal: no crash
        assert "event=store_open" in out.stderr and db in out.stderr, out.stderr
        print("read-only database at start: %s" % out.stderr.strip().splitlines()[-1], flush=True)
        subprocess.run(["mount", "-o", "remount,rw", fs], check=True)
        d = ltd.Daemon(ARGS, db=db)
        try:
            assert d.get("/v1/runs/" + run_id).status == 200
            assert d.post("/v1/runs", ltd.capacity_spec("http://127.0.0.1:9/")).status == 202
        finally:
            assert d.stop(signal.SIGTERM)[0] == 0
    finally:
        subprocess.run(["umount", fs])


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_disk_full_503_then_recovers,
                            test_read_only_at_start_is_refused_cleanly]))
