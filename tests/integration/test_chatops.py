"""Chat-ops and completion webhooks against a real loadtestd: notify.webhook_url deliveries (JSON
and Slack format, retried after a 500), the allowlist on webhook URLs, the Slack slash command
endpoint (signature, timestamps both ways, commands) and the verdict posted to response_url.
Every receiver is a Python http.server on 127.0.0.1; the capacity target is latency_target."""

import hashlib
import hmac
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ltd  # noqa: E402

args = ltd.parse_args()
SECRET = "8f1c2e3d4b5a69788796a5b4c3d2e1f0-chatops-test-secret"
ctx = {}


class Receiver:
    """A webhook receiver on 127.0.0.1 that records each POST (path, headers, JSON body) and
    answers the statuses queued in `plan` first, then 200."""

    def __init__(self, plan=()):
        self.plan = list(plan)
        self.got = []
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                with outer.cond:
                    status = outer.plan.pop(0) if outer.plan else 200
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    outer.got.append({"path": self.path, "headers": dict(self.headers),
                                      "body": body, "answered": status})
                    outer.cond.notify_all()
                if status == "hang":
                    time.sleep(30)  # never answers in time
                    status = 200
                self.send_response(status)
                if status in (429, 503):
                    self.send_header("Retry-After", "100")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count, timeout=30):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.got) < count:
                left = deadline - time.time()
                assert left > 0, "receiver got %d requests, wanted %d" % (len(self.got), count)
                self.cond.wait(left)
            return list(self.got)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def capacity_spec(duration_s=1, **extra):
    spec = {"kind": "capacity", "name": "chatops-test",
            "target": {"url": ctx["target"].base + "/"},
            "load": {"users": 1, "rate_per_user": 5, "duration_s": duration_s}}
    spec.update(extra)
    return spec


def sign(body, ts=None, secret=SECRET):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + mac.hexdigest(),
            "Content-Type": "application/x-www-form-urlencoded"}


def slack(d, text, response_url=None, trigger_id=None, headers=None, body=None):
    """POSTs a signed slash command; returns the Answer."""
    if body is None:
        fields = {"token": "legacy-ignored", "team_id": "T1", "user_id": "U1",
                  "command": "/loadtest", "text": text}
        if response_url:
            fields["response_url"] = response_url
        if trigger_id:
            fields["trigger_id"] = trigger_id
        body = urllib.parse.urlencode(fields).encode()
    return d.post("/v1/chatops/slack", raw_body=body,
                  headers=headers if headers is not None else sign(body))


def put_preset(d, name, spec):
    a = d.request("PUT", "/v1/presets/" + name, body=spec)
    assert a.status in (200, 201), a


def secret_file():
    f = tempfile.NamedTemporaryFile("w", prefix="ltd-slack-", delete=False)
    f.write(SECRET + "\n")
    f.close()
    return f.name


# ---- webhooks --------------------------------------------------------------------------------

def test_webhook_json_retried_after_500():
    rx = Receiver(plan=[500])
    try:
        d = ctx["d"]
        url = rx.base + "/hook/abc?token=hunter2-query-secret"
        a = d.post("/v1/runs", capacity_spec(notify={"webhook_url": url}))
        assert a.status == 202, a
        run_id = a.json["id"]
        stored = a.json["spec"]["notify"]
        assert stored["format"] == "json" and stored["events"] == ["finished"], stored
        assert "hunter2" not in stored["webhook_url"] and "***" in stored["webhook_url"], stored
        doc = d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        got = rx.wait_for(2, timeout=30)
        assert got[0]["answered"] == 500 and got[1]["answered"] == 200, got
        assert got[1]["path"] == "/hook/abc?token=hunter2-query-secret", got[1]["path"]
        body = got[1]["body"]
        errs = ltd.openapi(args.source).schema_errors("#/components/schemas/NotifySummary", body)
        assert not errs, errs
        assert body["id"] == run_id and body["kind"] == "capacity", body
        assert body["status"] == doc["status"] and body["url"] == "/v1/runs/" + run_id, body
        assert body["verdict"]["pass"] == doc["verdict"]["pass"], body
        assert body["verdict"]["checks"] == doc["verdict"]["checks"], body
        assert body["finished_at"] == doc["finished_at"], body
        assert got[1]["headers"].get("Content-Type", "").startswith("application/json"), got[1]
        deadline = time.time() + 10
        while "outcome=delivered" not in d.log_text() and time.time() < deadline:
            time.sleep(0.05)
        log = d.log_text()
        lines = [ln for ln in log.splitlines() if "event=notify" in ln and run_id in ln]
        assert any("attempt=1" in ln and "outcome=retry" in ln and "http_status=500" in ln
                   for ln in lines), lines
        assert any("attempt=2" in ln and "outcome=delivered" in ln for ln in lines), lines
        assert "hunter2" not in log and "/hook/abc" not in log, "the webhook URL leaked into the log"
    finally:
        rx.stop()


def test_webhook_slack_format_and_events():
    rx = Receiver()
    try:
        d = ctx["d"]
        # events: only failures; this run passes, so nothing may be sent for it.
        a = d.post("/v1/runs", capacity_spec(
            notify={"webhook_url": rx.base + "/quiet", "events": ["failed", "error"]}))
        assert a.status == 202, a
        quiet_id = a.json["id"]
        a = d.post("/v1/runs", capacity_spec(
            name="slack <fmt> & co", notify={"webhook_url": rx.base + "/slack", "format": "slack"}))
        assert a.status == 202, a
        run_id = a.json["id"]
        d.wait_status(quiet_id, ("passed", "failed", "error"), timeout=60)
        doc = d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        got = rx.wait_for(1, timeout=30)
        msg = got[0]["body"]
        assert got[0]["path"] == "/slack", got
        assert isinstance(msg["text"], str) and run_id in msg["text"], msg
        assert doc["status"] in msg["text"], msg
        assert "&lt;fmt&gt; &amp; co" in msg["text"], msg  # mrkdwn control characters escaped
        assert isinstance(msg["blocks"], list) and msg["blocks"][0]["type"] == "section", msg
        assert "response_type" not in msg, msg
        time.sleep(1.0)
        if doc["status"] == "passed":
            assert [g["path"] for g in rx.got] == ["/slack"], rx.got
    finally:
        rx.stop()


def test_webhook_validation_and_allowlist():
    d = ctx["d"]
    cases = [
        ({"webhook_url": "http://10.0.0.1:8080/hook"}, 403, "forbidden_target",
         "/notify/webhook_url"),
        ({"webhook_url": "http://169.254.169.254/latest"}, 403, "forbidden_target",
         "/notify/webhook_url"),
        ({"webhook_url": "http://127.0.0.1:9/x", "extra": 1}, 400, "invalid_spec",
         "/notify/extra"),
        ({"format": "json"}, 400, "invalid_spec", "/notify/webhook_url"),
        ({"webhook_url": "ftp://127.0.0.1/x"}, 400, "invalid_spec", "/notify/webhook_url"),
        ({"webhook_url": "http://127.0.0.1:9/x", "format": "xml"}, 400, "invalid_spec",
         "/notify/format"),
        ({"webhook_url": "http://127.0.0.1:9/x", "events": ["started"]}, 400, "invalid_spec",
         "/notify/events/0"),
        ({"webhook_url": "http://127.0.0.1:9/x", "events": []}, 400, "invalid_spec",
         "/notify/events"),
        ("http://127.0.0.1:9/x", 400, "invalid_spec", "/notify"),
    ]
    before = d.get("/v1/runs?limit=1000").json["runs"]
    for notify, status, code, field in cases:
        a = d.post("/v1/runs", capacity_spec(notify=notify))
        assert a.status == status, (notify, a)
        assert a.json["error"]["code"] == code and a.json["error"].get("field") == field, (notify,
                                                                                          a)
    assert d.get("/v1/runs?limit=1000").json["runs"] == before, "a refused spec stored a run"


# ---- Slack ------------------------------------------------------------------------------------

def test_slack_not_configured_404():
    d = ltd.Daemon(args)
    try:
        body = b"text=help"
        a = d.post("/v1/chatops/slack", raw_body=body, headers=sign(body))
        assert a.status == 404 and a.json["error"]["code"] == "not_found", a
        assert "slack-signing-secret" in a.json["error"]["message"], a
        assert d.stop()[0] == 0
    finally:
        d.kill()


def test_slack_signature():
    d = ctx["d"]
    body = urllib.parse.urlencode({"text": "help", "user_id": "U1"}).encode()
    now = int(time.time())
    a = slack(d, None, body=body)
    assert a.status == 200 and a.json["response_type"] == "ephemeral", a
    assert "run PRESET" in a.json["text"], a
    bad = [
        ("no headers", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("no signature", {"X-Slack-Request-Timestamp": str(now)}),
        ("no timestamp", {"X-Slack-Signature": sign(body)["X-Slack-Signature"]}),
        ("wrong secret", sign(body, secret=SECRET + "x")),
        ("stale by 6 min", sign(body, ts=now - 360)),
        ("6 min in the future", sign(body, ts=now + 360)),
        ("not a number", dict(sign(body), **{"X-Slack-Request-Timestamp": "12a"})),
        ("v1 scheme", dict(sign(body), **{"X-Slack-Signature": "v1=" + "0" * 64})),
        ("short", dict(sign(body), **{"X-Slack-Signature": "v0=abcd"})),
    ]
    for what, hdrs in bad:
        a = slack(d, None, body=body, headers=hdrs)
        assert a.status == 401 and a.json["error"]["code"] == "unauthorized", (what, a)
    # Signed for one body, sent with another.
    hdrs = sign(body)
    a = slack(d, None, body=body.replace(b"help", b"hel0"), headers=hdrs)
    assert a.status == 401, a
    # Upper-case hex and a timestamp 4 minutes off either way are fine.
    for ts in (now - 240, now + 240):
        hdrs = sign(body, ts=ts)
        hdrs["X-Slack-Signature"] = hdrs["X-Slack-Signature"].upper().replace("V0=", "v0=")
        a = slack(d, None, body=body, headers=hdrs)
        assert a.status == 200, (ts, a)


def test_slack_bad_forms():
    d = ctx["d"]
    for body, field in ((b"text=%zz", "text"), (b"text=a%00b", "text"),
                        (b"text=help&text=run+x", "text"), (b"text=%ff%fe", "text")):
        a = slack(d, None, body=body)
        assert a.status == 400 and a.json["error"]["code"] == "invalid_parameter", (body, a)
        assert a.json["error"].get("field") == field, (body, a)
    # Unknown commands, bad words: 200 with the help text and the reason.
    for text, why in (("deploy prod", "unknown command"), ("run", "needs an argument"),
                      ("status not/an/id", "not a run id"), ("run p x", "not key=value"),
                      ("run p a=1 a=2", "given twice"), ("run p a=1 a.b=2", "conflicts"),
                      ("status r1 r2", "one argument"), ("run p a=\"x y", "not closed")):
        a = slack(d, text)
        assert a.status == 200 and why in a.json["text"] and "run PRESET" in a.json["text"], (
            text, a)


def test_slack_status_last_cancel():
    d = ctx["d"]
    put_preset(d, "slow", capacity_spec(duration_s=30))
    put_preset(d, "quick", capacity_spec(duration_s=1))
    a = slack(d, "last quick")
    assert a.status == 200 and "No run of preset `quick`" in a.json["text"], a
    a = slack(d, "status r0000000000000000000")
    assert a.status == 200 and "No run with id" in a.json["text"], a

    a = slack(d, "run slow", trigger_id="111.222.slow")
    assert a.status == 200 and a.json["response_type"] == "in_channel", a
    slow_id = a.json["text"].split("`")[1]
    assert slow_id.startswith("r"), a
    # The same command replayed (same trigger_id) answers the same run, not a second one.
    a = slack(d, "run slow", trigger_id="111.222.slow")
    assert a.status == 200 and slow_id in a.json["text"] and "Already" in a.json["text"], a
    d.wait_status(slow_id, ("running",), timeout=30)
    a = slack(d, "status " + slow_id)
    assert a.status == 200 and slow_id in a.json["text"] and "running" in a.json["text"], a
    a = slack(d, "last slow")
    assert a.status == 200 and slow_id in a.json["text"], a
    a = slack(d, "cancel " + slow_id)
    assert a.status == 200 and "Cancelling" in a.json["text"], a
    d.wait_status(slow_id, ("cancelled",), timeout=30)
    a = slack(d, "cancel " + slow_id)
    assert a.status == 200 and "already ended" in a.json["text"], a
    a = slack(d, "run no-such-preset")
    assert a.status == 200 and "Could not start" in a.json["text"], a


def test_slack_run_posts_verdict_to_response_url():
    d = ctx["d"]
    rx = Receiver()
    try:
        put_preset(d, "quick", capacity_spec(duration_s=5))
        a = slack(d, "run quick load.duration_s=1 name=\"from slack\"",
                  response_url=rx.base + "/commands/T1/42/secretpart")
        assert a.status == 200 and a.json["response_type"] == "in_channel", a
        assert "Started run" in a.json["text"], a
        run_id = a.json["text"].split("`")[1]
        doc = d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        assert doc["spec"]["load"]["duration_s"] == 1, doc["spec"]
        assert doc["name"] == "from slack", doc
        got = rx.wait_for(1, timeout=30)
        msg = got[0]["body"]
        assert got[0]["path"] == "/commands/T1/42/secretpart", got
        assert msg["response_type"] == "in_channel" and run_id in msg["text"], msg
        assert doc["status"] in msg["text"], msg
        a = slack(d, "last quick")
        assert a.status == 200 and run_id in a.json["text"], a
        # A response_url off the allowlist: refused before any run starts.
        n = len(d.get("/v1/runs?limit=1000").json["runs"])
        a = slack(d, "run quick", response_url="https://hooks.slack.com/commands/T1/1/x")
        assert a.status == 200 and "allowlist" in a.json["text"], a
        assert len(d.get("/v1/runs?limit=1000").json["runs"]) == n, "a run was started"
        assert "secretpart" not in d.log_text(), "the response_url leaked into the log"
    finally:
        rx.stop()


def test_slack_run_cannot_move_preset_secrets():
    d = ctx["d"]
    spec = capacity_spec()
    spec["target"]["headers"] = {"Authorization": "Bearer slack-test-tok-51"}
    put_preset(d, "keyed", spec)
    n = len(d.get("/v1/runs?limit=1000").json["runs"])
    a = slack(d, "run keyed target.url=http://127.0.0.1:1/")
    assert a.status == 200 and a.json["response_type"] == "ephemeral", a
    assert "Could not start" in a.json["text"] and "/target/url" in a.json["text"], a
    assert "/target/headers/Authorization" in a.json["text"], a
    assert b"slack-test-tok-51" not in a.raw, a
    assert len(d.get("/v1/runs?limit=1000").json["runs"]) == n, "a run was started"


def test_slack_run_when_the_notifier_is_full():
    """1024 deliveries pending (queued runs with webhooks behind one long run): a Slack run still
    starts, but its answer says the verdict cannot be posted back, and the log says why."""
    d = ltd.Daemon(args, extra=["--slack-signing-secret", ctx["secret_path"],
                                "--max-concurrent-runs", "1", "--max-queued-runs", "1100"])
    try:
        put_preset(d, "quick", capacity_spec())
        a = d.post("/v1/runs", capacity_spec(duration_s=300))
        assert a.status == 202, a
        hook = {"webhook_url": "http://127.0.0.1:9/hook"}
        for i in range(1024):
            a = d.post("/v1/runs", capacity_spec(notify=hook))
            assert a.status == 202, (i, a)
        a = slack(d, "run quick", response_url="http://127.0.0.1:9/commands/T1/7/x")
        assert a.status == 200 and "Started run" in a.json["text"], a
        assert "cannot be posted back" in a.json["text"], a
        assert "follows here" not in a.json["text"], a
        run_id = a.json["text"].split("`")[1]
        assert "status %s" % run_id in a.json["text"], a
        assert "outcome=not_watched" in d.log_text(), "the log does not say why"
    finally:
        d.kill()


def test_expired_response_url_is_logged():
    """Slack refuses a response_url after 30 minutes or 5 posts (404): one clear log line, no
    retry."""
    d = ctx["d"]
    rx = Receiver(plan=[404])
    try:
        put_preset(d, "quick", capacity_spec(duration_s=5))
        a = slack(d, "run quick load.duration_s=1", response_url=rx.base + "/commands/T1/9/old")
        assert a.status == 200 and "Started run" in a.json["text"], a
        run_id = a.json["text"].split("`")[1]
        d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        got = rx.wait_for(1, timeout=30)
        assert got[0]["answered"] == 404, got
        deadline = time.time() + 10
        line = ""
        while not line and time.time() < deadline:
            line = next((x for x in d.log_text().splitlines()
                         if run_id in x and "reason=response_url_refused" in x), "")
            time.sleep(0.1)
        assert "30 minutes" in line and "http_status=404" in line, line
        time.sleep(1.5)
        assert len(rx.got) == 1, rx.got  # not retried
    finally:
        rx.stop()


def test_secret_from_environment():
    d = ltd.Daemon(args, env={"LOADTESTD_SLACK_SIGNING_SECRET": SECRET})
    try:
        a = slack(d, "help")
        assert a.status == 200, a
        # Read once, then wiped where it lay and unset: the daemon's /proc/PID/environ no
        # longer shows it (and children would not inherit it).
        with open("/proc/%d/environ" % d.proc.pid, "rb") as f:
            environ = f.read()
        assert SECRET.encode() not in environ, "the signing secret is still in the environment"
        body = b"text=help"
        a = slack(d, None, body=body, headers=sign(body, secret="other"))
        assert a.status == 401, a
        assert SECRET not in d.log_text()
        assert d.stop()[0] == 0
    finally:
        d.kill()
    # The secret itself is never a flag (it would show in ps).
    import subprocess
    p = subprocess.run([args.loadtestd, "--slack-signing-secret-value", SECRET],
                       capture_output=True, timeout=10)
    assert p.returncode == 2 and SECRET.encode() not in p.stderr, p


def test_retry_after_and_shutdown():
    """A receiver that answers 503 with Retry-After: 100: the next attempt is scheduled 100 s
    later; SIGTERM then gives the pending delivery one last attempt and the daemon still exits
    promptly."""
    rx = Receiver(plan=[503] * 10)
    d = ltd.Daemon(args)
    try:
        a = d.post("/v1/runs", capacity_spec(notify={"webhook_url": rx.base + "/busy"}))
        assert a.status == 202, a
        run_id = a.json["id"]
        d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        rx.wait_for(1, timeout=30)
        deadline = time.time() + 10
        while "retry_in_s=100" not in d.log_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "retry_in_s=100" in d.log_text(), d.log_text()[-2000:]
        rc, took = d.stop()
        assert rc == 0 and took < 15, (rc, took)
        got = rx.wait_for(2, timeout=5)
        assert len(got) == 2, got
        lines = [ln for ln in d.log_text().splitlines() if "event=notify" in ln]
        assert any("attempt=2" in ln and "gave_up=1" in ln for ln in lines), lines
    finally:
        d.kill()
        rx.stop()


def test_hanging_receiver_does_not_hold_up_shutdown():
    """A receiver that never answers: SIGTERM cuts the attempt in progress short (instead of
    waiting out its 10 s timeout), the last attempt is bounded, and the daemon exits 0."""
    rx = Receiver(plan=["hang", "hang"])
    d = ltd.Daemon(args)
    try:
        a = d.post("/v1/runs", capacity_spec(notify={"webhook_url": rx.base + "/slow"}))
        assert a.status == 202, a
        rx.wait_for(1, timeout=60)
        rc, took = d.stop()
        assert rc == 0 and took < 6, (rc, took)
        lines = [ln for ln in d.log_text().splitlines() if "event=notify" in ln]
        assert any("gave_up=1" in ln or "outcome=dropped" in ln for ln in lines), lines
    finally:
        d.kill()
        rx.stop()


def test_secret_never_logged():
    d = ctx["d"]
    rc, _ = d.stop()
    assert rc == 0, "loadtestd exited %d (a sanitizer report?): %s" % (rc, d.log_text()[-3000:])
    log = d.log_text()
    assert "event=chatops slack=enabled" in log, log[-2000:]
    assert SECRET not in log, "the signing secret is in the log"
    assert SECRET[:16] not in log


def test_webhook_refused_at_connect():
    """rebind.test is allowed by name, so the POST passes, but it resolves to 169.254.169.254
    (chatops_connect.sh maps it there inside a namespace with only loopback): the connect-time
    check must refuse the connection, and the delivery must not be retried."""
    d = ltd.Daemon(args, extra=["--allow-target", "127.0.0.1", "--allow-target",
                                "rebind.test:80"])
    try:
        a = d.post("/v1/runs", capacity_spec(
            notify={"webhook_url": "http://rebind.test/hook?key=s3cr3t-query"}))
        assert a.status == 202, a
        run_id = a.json["id"]
        d.wait_status(run_id, ("passed", "failed", "error"), timeout=60)
        deadline = time.time() + 20
        while "reason=forbidden_target" not in d.log_text() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # a retry would have come after 1 s
        lines = [ln for ln in d.log_text().splitlines() if "event=notify" in ln]
        assert len(lines) == 1, lines
        assert "reason=forbidden_target" in lines[0] and "attempt=1" in lines[0], lines
        assert "target=http://rebind.test:80" in lines[0], lines
        assert "s3cr3t" not in d.log_text()
        assert d.stop()[0] == 0
    finally:
        d.kill()


def connect_check():
    """The part of this test that needs chatops_connect.sh's namespaces."""
    ctx["target"] = ltd.Target(args, "latency_target")
    try:
        return ltd.run_tests([test_webhook_refused_at_connect])
    finally:
        ctx["target"].stop()


def main():
    if "--connect-check" in sys.argv:
        return connect_check()
    ctx["target"] = ltd.Target(args, "latency_target")
    path = secret_file()
    ctx["secret_path"] = path
    ctx["d"] = ltd.Daemon(args, extra=["--slack-signing-secret", path])
    try:
        rc = ltd.run_tests([
            test_webhook_json_retried_after_500,
            test_webhook_slack_format_and_events,
            test_webhook_validation_and_allowlist,
            test_slack_not_configured_404,
            test_slack_signature,
            test_slack_bad_forms,
            test_slack_status_last_cancel,
            test_slack_run_posts_verdict_to_response_url,
            test_slack_run_cannot_move_preset_secrets,
            test_slack_run_when_the_notifier_is_full,
            test_expired_response_url_is_logged,
            test_secret_from_environment,
            test_retry_after_and_shutdown,
            test_hanging_receiver_does_not_hold_up_shutdown,
            test_secret_never_logged,
        ])
    finally:
        ctx["d"].kill()
        ctx["target"].stop()
        os.unlink(path)
    return rc


if __name__ == "__main__":
    sys.exit(main())
