"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, each a JSON message ended by
NUL), standard library only: open a URL as a person would, read the rendered text and HTML
(the DOM after the page's script ran), save a screenshot.

Nothing leaves loopback: Chromium's own services are off (the flags below), and
`--host-resolver-rules` answers every host name but 127.0.0.1 with NOTFOUND, so not even a
DNS query is sent. A fresh `--user-data-dir` per browser: no state between tests.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
]


class Browser:
    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        assert CHROMIUM is not None
        self.timeout = timeout
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        # The child needs them as fds 3 and 4: copies at >= 10 (close-on-exec) are moved
        # there by dup2 after the fork (dup2's copy is inheritable, every other fd of ours
        # is not: PEP 446, so close_fds=False leaks nothing).
        hi_cmd = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_resp = fcntl.fcntl(resp_w, fcntl.F_DUPFD_CLOEXEC, 10)

        def child_fds() -> None:
            os.dup2(hi_cmd, 3)
            os.dup2(hi_resp, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(profile.parent / f"{profile.name}.stderr", "wb"),
            close_fds=False,
            preexec_fn=child_fds,  # noqa: PLW1509 - dup2 only, before exec
            start_new_session=True,
        )
        for fd in (cmd_r, resp_w, hi_cmd, hi_resp):
            os.close(fd)
        self._ids = itertools.count(1)
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.session = ""
        self.statuses: list[int] = []
        """The HTTP status of each document loaded by `open`, in order."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Network.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=920,
            height=640,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._resp_r, 65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._answers.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self._events.put(msg)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        q: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._answers[n] = q
        msg: dict[str, Any] = {"id": n, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        try:
            answer = q.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"chromium did not answer {method} in {self.timeout} s") from None
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return dict(answer.get("result") or {})

    def open(self, url: str) -> None:
        """Navigate and wait for the load event (the page's script has run by then)."""
        while not self._events.empty():
            self._events.get_nowait()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{url} did not load in {self.timeout} s")
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                continue
            params = event.get("params") or {}
            if event.get("method") == "Network.responseReceived" and params["type"] == "Document":
                self.statuses.append(int(params["response"]["status"]))
            if event.get("method") == "Page.loadEventFired":
                return

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The rendered text, as a person reads it (hidden elements left out)."""
        return str(self.eval("document.body ? document.body.innerText : ''"))

    def html(self) -> str:
        return str(self.eval("document.documentElement.outerHTML"))

    def wait_text(self, needle: str, timeout: float = 30.0) -> str:
        """Wait until the rendered text contains `needle` (the page updates itself)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared; the page says:\n{text}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def new_context(self) -> None:
        """Continue in a fresh browser context: no cookies, as a stranger's browser."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", url="about:blank", browserContextId=context)[
            "targetId"
        ]
        self.session = ""
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Network.enable")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._cmd_w)  # Chromium exits when its command pipe closes
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        os.close(self._resp_r)
