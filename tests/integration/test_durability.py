"""Crash durability and stopping under load.

SIGKILL at random moments, again and again, on one database, while a client keeps submitting
short capacity runs and reading their time series. After each restart: every run that was
answered 202 exists; none is still queued or running (the restart marked them interrupted); every
per-second point a GET showed before the kill is still there with the same values (points are
committed before they are shown); the daemon serves and accepts runs. The RNG seed is printed;
LTD_SEED=<n> repeats a sequence.

SIGTERM during heavy load: exit within 5 s, every run cancelled with what it measured."""

import http.client
import os
import random
import signal
import sys
import threading
import time

import ltd

ARGS = ltd.parse_args()
ROUNDS = 9


def test_random_sigkill_keeps_accepted_runs_and_points():
    seed = int(os.environ.get("LTD_SEED", random.SystemRandom().randrange(1 << 30)))
    print("seed=%d (LTD_SEED=%d repeats this sequence)" % (seed, seed), flush=True)
    rng = random.Random(seed)
    t = ltd.Target(ARGS, "latency_target")
    d = None
    db = None
    accepted = {}  # run id -> the round it was accepted in
    seen = {}      # run id -> {t: point} as some GET showed it
    extra = ["--max-concurrent-runs", "3", "--max-queued-runs", "100"]
    try:
        for rnd in range(ROUNDS + 1):
            d = ltd.Daemon(ARGS, db=db, extra=extra)
            db = d.db
            assert d.get("/healthz").status == 200
            # Everything accepted before this start: present, finished, points intact.
            for run_id, when in accepted.items():
                a = d.get("/v1/runs/" + run_id)
                assert a.status == 200, "run %s (accepted in round %d) lost: %r" % (run_id, when,
                                                                                    a)
                assert a.json["status"] in ltd.FINISHED, (run_id, a.json["status"])
                if a.json["status"] == "interrupted":
                    assert a.json["error"]["code"] == "interrupted" and a.json["finished_at"]
                after = {p["t"]: p for p in d.points(run_id)}
                for pt_t, pt in seen.get(run_id, {}).items():
                    assert after.get(pt_t) == pt, ("run %s point t=%d changed or lost: %r -> %r"
                                                   % (run_id, pt_t, pt, after.get(pt_t)))
                if len(seen.get(run_id, {})) >= 2:
                    assert a.json["result"] is not None, (run_id, a.json)
            if rnd == ROUNDS:
                break
            # Submit and read until a timer SIGKILLs the daemon at a random moment (possibly
            # in the middle of a request, a commit or a run's start).
            kill_after = rng.uniform(0.5, 4.5)
            timer = threading.Timer(kill_after, os.kill, (d.proc.pid, signal.SIGKILL))
            timer.start()
            mine = []
            try:
                while d.proc.poll() is None:
                    try:
                        if rng.random() < 0.4 or not mine:
                            body = ltd.capacity_spec(t.base + "/fixed?ms=1", name="kill%d" % rnd,
                                                     duration=rng.choice([1, 2, 3, 5]), users=2,
                                                     rate=rng.choice([10, 50, 100]))
                            a = d.post("/v1/runs", body, timeout=5)
                            if a.status == 202:
                                accepted[a.json["id"]] = rnd
                                mine.append(a.json["id"])
                            else:
                                assert a.status == 429, a  # the queue bound; never a 5xx
                        else:
                            run_id = rng.choice(mine[:4])  # the oldest: running
                            for p in d.points(run_id):
                                seen.setdefault(run_id, {})[p["t"]] = p
                    except (OSError, http.client.HTTPException) as e:
                        if d.proc.poll() is None:
                            time.sleep(0.05)  # killed mid-read: the loop condition ends it
                            if d.proc.poll() is None:
                                raise AssertionError("request failed, daemon alive: %r" % e)
                    time.sleep(rng.uniform(0, 0.1))
            finally:
                timer.join()
                d.kill()
            assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
            print("round %d: killed after %.2fs; so far %d runs accepted, %d points seen"
                  % (rnd, kill_after, len(accepted), sum(len(v) for v in seen.values())),
                  flush=True)
        assert len(accepted) >= ROUNDS, "too few runs accepted to prove anything: %d" % len(accepted)
        assert any(len(v) >= 2 for v in seen.values()), "no run showed points before a kill"
        # The last daemon still runs new work to the end on the same database.
        a = d.post("/v1/runs", ltd.capacity_spec(t.base + "/fixed?ms=1", duration=1))
        assert a.status == 202, a
        doc = d.wait_status(a.json["id"], {"passed"}, timeout=30)
        assert doc["result"]["requests"] > 0
        statuses = {}
        for run_id in accepted:
            s = d.get("/v1/runs/" + run_id).json["status"]
            statuses[s] = statuses.get(s, 0) + 1
        print("final statuses of %d killed-round runs: %r" % (len(accepted), statuses), flush=True)
        assert statuses.get("interrupted", 0) >= 1, statuses
        rc, _ = d.stop()
        assert rc == 0, rc
    finally:
        if d:
            d.kill()
        t.stop()


def test_sigterm_under_heavy_load():
    """Three capacity runs at 1,000 req/s each, one more whose every request hangs (in flight
    when the signal comes), one queued: SIGTERM -> exit 0 within 5 s; at the next start every
    run is cancelled, the running ones with their partial result and every point shown before."""
    t = ltd.Target(ARGS, "latency_target")
    d = ltd.Daemon(ARGS, extra=["--max-concurrent-runs", "4", "--max-queued-runs", "10"])
    try:
        running = []
        for i in range(3):
            a = d.post("/v1/runs", ltd.capacity_spec(t.base + "/fixed?ms=5", duration=60,
                                                     users=50, rate=20, name="heavy%d" % i))
            assert a.status == 202, a
            running.append(a.json["id"])
        a = d.post("/v1/runs", ltd.capacity_spec(t.base + "/hang", duration=60, users=20,
                                                 rate=5, timeout_ms=60000, name="hanging"))
        running.append(a.json["id"])
        queued = d.post("/v1/runs", ltd.capacity_spec(t.base + "/fixed?ms=1")).json["id"]
        seen = {}
        for run_id in running:
            d.wait_status(run_id, {"running"})
        for run_id in running:
            seen[run_id] = d.wait_points(run_id, 2, timeout=20)
        rc, took = d.stop(signal.SIGTERM, timeout=15)
        print("SIGTERM with 4 runs at ~3,000 req/s + 100 hanging requests: exit %d in %.2fs"
              % (rc, took), flush=True)
        assert rc == 0, rc
        assert took < 5, "took %.2fs to exit" % took
        d2 = ltd.Daemon(ARGS, db=d.db)
        try:
            for run_id in running:
                doc = d2.get("/v1/runs/" + run_id).json
                assert doc["status"] == "cancelled", doc
                res = doc["result"]
                assert res is not None and res["complete"] is False, doc
                if run_id == running[-1]:  # every request hung: none completed, all in flight
                    assert any("in flight" in n for n in res["notes"]), res["notes"]
                else:
                    assert res["requests"] > 0 and res["status_codes"].get("200", 0) > 0, res
                after = {p["t"]: p for p in d2.points(run_id)}
                for p in seen[run_id]:
                    assert after.get(p["t"]) == p, (run_id, p, after.get(p["t"]))
            assert d2.get("/v1/runs/" + queued).json["status"] == "cancelled"
            assert "interrupted_runs" not in d2.log_text()
        finally:
            d2.stop()
    finally:
        d.kill()
        t.stop()


if __name__ == "__main__":
    sys.exit(ltd.run_tests([test_random_sigkill_keeps_accepted_runs_and_points,
                            test_sigterm_under_heavy_load]))
