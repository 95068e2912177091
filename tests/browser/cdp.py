"""cdp: a minimal Chrome DevTools Protocol client over --remote-debugging-pipe (Python standard
library only; no WebSocket, no npm).

Chromium started with --remote-debugging-pipe reads commands from its fd 3 and writes answers and
events to its fd 4, one JSON message per NUL-terminated record. Browser.start() launches it with
those two pipes, Browser.page() opens a tab and attaches to it (flat session), and Page offers
the few calls the dashboard test needs: navigate, evaluate, wait_for, screenshot."""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, binary="chromium", width=1360, height=900):
        self.tmp = tempfile.mkdtemp(prefix="ltd-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads them on fd 3
        out_r, out_w = os.pipe()  # chromium writes on fd 4, we read
        # Out of the way of 3 and 4 before the child moves them there.
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(out_w)

        def in_child():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--user-data-dir=" + os.path.join(self.tmp, "profile"),
                "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--mute-audio",
                "--hide-scrollbars", "--disable-dev-shm-usage", "--password-store=basic",
                "--window-size=%d,%d" % (width, height), "about:blank"]
        self.log = open(os.path.join(self.tmp, "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, preexec_fn=in_child, close_fds=False)
        os.close(child_in)
        os.close(child_out)
        self.wfd = cmd_w
        self.rfd = out_r
        self.next_id = 0
        self.lock = threading.Lock()  # guards: next_id, answers, events
        self.cond = threading.Condition(self.lock)
        self.answers = {}
        self.events = []
        self.closed = False
        self.reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self.reader.start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                rec, buf = buf.split(b"\0", 1)
                msg = json.loads(rec)
                with self.cond:
                    if "id" in msg:
                        self.answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def send(self, method, params=None, session=None, timeout=20):
        with self.cond:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.wfd, data)
            data = data[n:]
        deadline = time.time() + timeout
        with self.cond:
            while mid not in self.answers:
                left = deadline - time.time()
                if self.closed or left <= 0:
                    raise CdpError("%s: no answer (%s)" % (method, "closed" if self.closed
                                                           else "timeout"))
                self.cond.wait(left)
            ans = self.answers.pop(mid)
        if "error" in ans:
            raise CdpError("%s: %s" % (method, ans["error"]))
        return ans.get("result", {})

    def page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        return Page(self, session)

    def events_of(self, session, method):
        with self.cond:
            return [e for e in self.events
                    if e.get("sessionId") == session and e.get("method") == method]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except (CdpError, OSError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Page:
    def __init__(self, browser, session):
        self.b = browser
        self.session = session
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")

    def send(self, method, params=None, timeout=20):
        return self.b.send(method, params, session=self.session, timeout=timeout)

    def navigate(self, url):
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", what="page load of " + url)

    def evaluate(self, expression):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        ans = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in ans:
            raise CdpError("evaluate %r: %s" % (expression, ans["exceptionDetails"]))
        return ans["result"].get("value")

    def wait_for(self, expression, timeout=15, what=None):
        """Polls expression until it is truthy; returns its value (true for a DOM node)."""
        deadline = time.time() + timeout
        last = None
        wrapped = "(() => { const v = (%s); return v instanceof Node ? true : v; })()" % expression
        while time.time() < deadline:
            try:
                last = self.evaluate(wrapped)
            except CdpError:
                last = None
            if last:
                return last
            time.sleep(0.1)
        try:
            shown = self.evaluate("document.body ? document.body.innerText.slice(0, 800) : ''")
        except CdpError as e:
            shown = str(e)
        raise AssertionError("timed out after %ss waiting for %s; the page shows:\n%s\n"
                             "console: %s" % (timeout, what or expression, shown,
                                              self.console_problems()))

    def screenshot(self, path, width=1360):
        """A PNG of the whole page (the viewport grown to the page's height)."""
        height = int(self.evaluate("document.documentElement.scrollHeight") or 900)
        height = max(600, min(height, 6000))
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False})
        time.sleep(0.3)  # charts redraw on resize
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        self.send("Emulation.clearDeviceMetricsOverride")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def console_problems(self):
        """Console errors, uncaught exceptions and CSP violations seen so far."""
        out = []
        for e in self.b.events_of(self.session, "Runtime.exceptionThrown"):
            out.append("exception: %s" % e["params"]["exceptionDetails"].get("text"))
        for e in self.b.events_of(self.session, "Log.entryAdded"):
            entry = e["params"]["entry"]
            if entry.get("level") == "error":
                out.append("%s: %s %s" % (entry.get("source"), entry.get("text"),
                                          entry.get("url", "")))
        for e in self.b.events_of(self.session, "Runtime.consoleAPICalled"):
            if e["params"].get("type") == "error":
                out.append("console.error: %s" % e["params"].get("args"))
        return out
