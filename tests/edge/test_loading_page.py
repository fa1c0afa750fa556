"""While SGLang is not ready, the API port says what is happening: real Caddy (`edge`), the
real `loading-page` handler, status.json written by the launcher's own writers (or by the
launcher itself, `run` with the stand-in), called over real HTTP by an API client and by
headless Chromium as a person would (rendered text checked, screenshots under tmp_path)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from browser import CHROMIUM, Browser
from conftest import LauncherRig, Reaper, launcher_argv, launcher_env, wait_for_port
from test_loading_view import DOWNLOAD, write_phase

from vast_sglang_launcher.timestamps import iso

pytestmark = pytest.mark.skipif(
    shutil.which("caddy") is None and not os.environ.get("CI"),
    reason="caddy is not installed here (CI installs it and runs these tests)",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed here (.ci/run installs it)",
)

TOKEN = "tok-3f9a1c77e2b84d05"
API_KEY = "sk-live-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@dataclass
class Site:
    rig: LauncherRig
    port: int
    client: httpx.Client

    @property
    def status_path(self) -> Path:
        return self.rig.run_dir / "status.json"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, method: str = "GET", path: str = "/v1/models", **kw: Any) -> httpx.Response:
        return self.client.request(method, self.url(path), headers=BEARER, **kw)

    def phase(self, state: str, phases: list[tuple[str, dict[str, Any]]], **fields: Any) -> None:
        write_phase(self.status_path, state, phases, **fields)


def _wait(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


@pytest.fixture
def site(rig: LauncherRig, reaper: Reaper, port_factory: Callable[[], int]) -> Iterator[Site]:
    """The edge publishing the stand-in's port with the token, and the loading page."""
    port = port_factory()
    rig.env.update(
        OPEN_BUTTON_TOKEN=TOKEN,
        PORTAL_CONFIG=f"localhost:{port}:{rig.port}:/docs:SGLang API",
        LAUNCHER_PORTAL_YAML=str(rig.tmp / "portal.yaml"),
        SGLANG_ARGS=f"--api-key {API_KEY}",  # a secret the page must mask
    )
    rig.logs.mkdir(exist_ok=True)
    procs = {}
    for name in ("loading-page", "edge"):
        with open(rig.tmp / f"{name}.log", "wb") as out:
            procs[name] = reaper.add(
                subprocess.Popen(
                    launcher_argv(name),
                    env=launcher_env(rig.env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=rig.tmp,
                )
            )
    _wait((rig.run_dir / "loading.sock").exists, "the loading page's socket")
    wait_for_port(port, procs["edge"])
    with httpx.Client(timeout=20, follow_redirects=False) as client:
        yield Site(rig, port, client)
    for name, proc in procs.items():
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, name
    log = (rig.tmp / "loading-page.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


def _not_ready(r: httpx.Response, phase: str, retry: bool = True) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert ("retry-after" in r.headers) is retry
    if retry:
        assert 1 <= int(r.headers["retry-after"]) <= 60
    error = r.json()["error"]
    assert error["type"] == "server_not_ready" and error["phase"] == phase, error
    assert set(r.json()) == {"error"}
    return dict(error)


# --- API clients -------------------------------------------------------------------------------

PHASES: list[tuple[str, str, list[tuple[str, dict[str, Any]]], dict[str, Any]]] = [
    ("waiting_provisioning", "waiting_provisioning", [("waiting_provisioning", {})], {}),
    ("starting", "downloading", [("waiting_provisioning", {}), ("downloading", DOWNLOAD)], {}),
    ("starting", "starting", [("starting", {})], {}),
    ("starting", "loading_weights", [("starting", {}), ("loading_weights", {"shards": "3/8"})], {}),
    ("starting", "kv_cache", [("starting", {}), ("kv_cache", {})], {}),
    ("starting", "cuda_graph", [("starting", {}), ("kv_cache", {}), ("cuda_graph", {})], {}),
    ("starting", "warmup", [("starting", {}), ("cuda_graph", {}), ("warmup", {})], {}),
    (
        "backoff",
        "backoff",
        [("starting", {})],
        {"last_reason": "the server was killed by SIGKILL", "next_start_at": "soon"},
    ),
]


def test_api_clients_get_503_with_retry_after_and_the_phase(site: Site) -> None:
    r = site.api()  # no status.json yet
    assert _not_ready(r, "starting")["message"] == "SGLang is loading: starting the server"
    for state, phase, phases, fields in PHASES:
        site.phase(state, phases, **fields)
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            r = site.api(method, path, json=body if method == "POST" else None)
            error = _not_ready(r, phase)
            assert error["code"] == "loading"
    site.phase("starting", [("downloading", DOWNLOAD)])
    error = _not_ready(site.api(), "downloading")
    assert "4.2 GiB of 15.2 GiB, 180.0 MiB/s, about 1 min left" in error["message"]
    assert error["progress"]["done"] == DOWNLOAD["bytes_done"]
    # a streaming request waits for nothing: the answer is the same 503 at once
    with site.client.stream(
        "POST", site.url("/v1/chat/completions"), headers=BEARER, json={"stream": True}
    ) as r:
        assert r.status_code == 503 and json.loads(r.read())["error"]["phase"] == "downloading"


def test_after_a_give_up_the_503_has_the_hint_and_the_cause_and_no_retry_after(
    site: Site,
) -> None:
    site.phase(
        "failed",
        [("starting", {})],
        last_reason="the server exited with status 1 before it was ready",
        hint="no GPU is visible to the container: run it with --gpus all",
        last_error=["RuntimeError: No accelerator (CUDA, XPU, HPU, NPU) is available."],
    )
    error = _not_ready(site.api(), "failed", retry=False)
    assert error["code"] == "failed"
    assert "Hint: no GPU is visible to the container: run it with --gpus all" in error["message"]
    assert "Cause: RuntimeError: No accelerator" in error["message"]


def test_a_server_that_died_after_the_marker_is_still_a_503_not_a_bare_502(site: Site) -> None:
    site.phase("ready", [("starting", {})], ready_at=iso(time.time()))
    assert (site.rig.run_dir / "serving").exists()  # the edge proxies to SGLang...
    r = site.api()  # ...which does not listen: Caddy's dial error goes to the loading page
    _not_ready(r, "starting")


@pytest.mark.parametrize(
    "content",
    [None, b"", b'{"state": "starting", "pha', b"\x00\xff garbage", b"[1, 2]", b'"ready"'],
    ids=["missing", "empty", "partial", "garbage", "list", "string"],
)
def test_bad_status_files_read_as_starting(site: Site, content: bytes | None) -> None:
    site.status_path.unlink(missing_ok=True)
    if content is not None:
        site.status_path.write_bytes(content)
    error = _not_ready(site.api(), "starting")
    assert error["message"] == "SGLang is loading: starting the server"
    r = site.client.get(site.url("/"), headers={**BEARER, **HTML})
    assert r.status_code == 503 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert "starting the server" in r.text and "Traceback" not in r.text


def test_only_authenticated_requests_see_it(site: Site) -> None:
    site.phase("starting", [("downloading", DOWNLOAD)])
    for headers in ({}, HTML, {"Authorization": "Bearer wrong"}):
        r = site.client.get(site.url("/v1/models"), headers=headers)
        assert r.status_code == 401 and "downloading" not in r.text
    # the portal's link: /docs?token=... sets the cookie, then the page shows
    r = site.client.get(site.url(f"/docs?token={quote(TOKEN)}"), headers=HTML)
    assert r.status_code == 302 and r.headers["location"] == "/docs"
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    r = site.client.get(site.url("/docs"), headers={**HTML, "Cookie": cookie})
    assert r.status_code == 503 and "<title>SGLang is loading</title>" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_no_secret_reaches_the_json_or_the_page(site: Site) -> None:
    site.rig.logs.mkdir(exist_ok=True)
    (site.rig.logs / "sglang.log").write_text(
        f"server_args=ServerArgs(model_path='m', api_key='{API_KEY}', port=18000)\n"
        f"token {TOKEN} in a line\n"
        "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01]\r"
    )
    site.phase("starting", [("starting", {}), ("loading_weights", {})])
    r = site.api()
    error = _not_ready(r, "loading_weights")
    assert error["last_lines"] == [
        "server_args=ServerArgs(model_path='m', api_key=***, port=18000)",
        "token *** in a line",
        "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01]",
    ]
    page = site.client.get(site.url("/"), headers={**BEARER, **HTML}).text
    for text in (r.text, page):
        assert TOKEN not in text and API_KEY not in text


# --- the launcher itself, with the stand-in ------------------------------------------------------


def test_the_real_launcher_loading_then_ready_streaming_untouched(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    rig = site.rig
    proc = rig.start(STANDIN_BIND_DELAY="600")
    rig.wait_for(
        lambda: ((rig.status() or {}).get("phase") or {}).get("name") == "loading_weights",
        "phase loading_weights",
    )
    error = _not_ready(site.api(), "loading_weights")
    assert any("Load weight begin" in line for line in error["last_lines"])
    # a person opens the portal's link while it loads
    browser.open(site.url(f"/docs?token={quote(TOKEN)}"))
    text = browser.wait_text("loading weights")
    assert "SGLang is loading" in text and "Last server lines" in text
    browser.screenshot(tmp_path / "loading_weights.png")

    proc.send_signal(signal.SIGTERM)
    assert rig.wait_exit(proc) == 0
    assert not (rig.run_dir / "serving").exists()
    rig.start()
    rig.wait_state("ready")
    # the page, still open, turns into a link to /docs
    text = browser.wait_text("SGLang is ready")
    assert "open the API docs (/docs)" in text
    assert browser.eval("document.querySelector('#ready a').getAttribute('href')") == "/docs"
    browser.screenshot(tmp_path / "ready.png")

    # requests reach SGLang untouched, streaming included
    r = site.api()
    assert r.status_code == 200 and r.json()["object"] == "list", r.text
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with site.client.stream(
        "POST", site.url("/v1/chat/completions"), headers=BEARER, json=body
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) > 2 and events[-1] == "data: [DONE]"


def test_the_real_launcher_gives_up_and_the_page_says_why(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    rig = site.rig
    proc = rig.start(STANDIN_FAILURE="no_accelerator")
    assert rig.wait_exit(proc, 60) == 78
    error = _not_ready(site.api(), "failed", retry=False)
    assert "No accelerator" in error["message"] and error["hint"]
    browser.open(site.url(f"/?token={quote(TOKEN)}"))
    text = browser.wait_text("SGLang failed to start")
    assert error["hint"] in text and "No accelerator" in text
    browser.screenshot(tmp_path / "failed.png")


# --- people: headless Chromium in each phase ----------------------------------------------------

BROWSER_PHASES: list[tuple[str, list[tuple[str, dict[str, Any]]], dict[str, Any], list[str]]] = [
    (
        "waiting_provisioning",
        [("waiting_provisioning", {})],
        {},
        ["SGLang is loading", "Now: waiting for provisioning"],
    ),
    (
        "starting",
        [("waiting_provisioning", {}), ("downloading", DOWNLOAD)],
        {},
        [
            "Now: downloading the weights",
            "4.2 GiB of 15.2 GiB, 180.0 MiB/s, about 1 min left",
            "waiting for provisioning\n30.0 s",
        ],
    ),
    (
        "starting",
        [("starting", {}), ("loading_weights", {"shards_done": 3, "shards_total": 8})],
        {},
        ["Now: loading weights", "shard 3 of 8", "starting the server\n30.0 s"],
    ),
    (
        "starting",
        [("starting", {}), ("loading_weights", {}), ("kv_cache", {}), ("cuda_graph", {})],
        {},
        ["Now: capturing CUDA graphs", "allocating the KV cache\n30.0 s"],
    ),
    ("starting", [("starting", {}), ("warmup", {})], {}, ["Now: warming up"]),
    (
        "backoff",
        [("starting", {})],
        {"last_reason": "the server was killed by SIGKILL", "last_error": ["boom: it broke"]},
        ["restarting after a crash", "the server was killed by SIGKILL", "boom: it broke"],
    ),
    (
        "failed",
        [("starting", {})],
        {
            "last_reason": "the server exited with status 1 before it was ready",
            "hint": "the GPU ran out of memory: lower --mem-fraction-static",
            "last_error": ["torch.OutOfMemoryError: CUDA out of memory."],
        },
        [
            "SGLang failed to start",
            "What to do: the GPU ran out of memory: lower --mem-fraction-static",
            "torch.OutOfMemoryError: CUDA out of memory.",
        ],
    ),
]


@needs_chromium
def test_a_person_sees_each_phase_in_chromium(site: Site, browser: Browser, tmp_path: Path) -> None:
    site.status_path.write_text("{ not json")
    browser.open(site.url(f"/?token={quote(TOKEN)}"))  # the token link: cookie, then the page
    assert browser.statuses == [503]  # after the redirect (not reported as a response)
    assert browser.eval("location.search") == ""  # the token left the address bar
    text = browser.wait_text("starting the server")
    assert "SGLang is loading" in text
    browser.screenshot(tmp_path / "garbage.png")
    for n, (state, phases, fields, expected) in enumerate(BROWSER_PHASES):
        site.phase(state, phases, **fields)
        # the open page updates itself: no reload
        browser.wait_text(expected[0])
        text = browser.wait_text(expected[-1])
        for needle in expected:
            assert needle in text, (needle, text)
        assert TOKEN not in browser.html()
        name = phases[-1][0] if state == "starting" else state
        shot = browser.screenshot(tmp_path / f"{n}-{name}.png")
        assert shot.stat().st_size > 5000
        (tmp_path / f"{n}-{name}.html").write_text(browser.html())
    # the download's progress bar is drawn at its fraction
    site.phase("starting", [("downloading", DOWNLOAD)])
    browser.open(site.url("/"))
    width = browser.eval("document.getElementById('fill').style.width")
    assert width == "27.6%"
    if os.environ.get("LOADING_PAGE_SCREENSHOT"):  # docs/loading-page.png, for README.md
        site.phase("starting", [("waiting_provisioning", {}), ("downloading", DOWNLOAD)])
        browser.open(site.url("/"))
        browser.screenshot(Path(os.environ["LOADING_PAGE_SCREENSHOT"]))
    # a stranger's browser (no cookie) gets the edge's 401, not the page
    browser.new_context()
    browser.open(site.url("/"))
    assert browser.statuses[-1] == 401
    assert "SGLang" not in browser.text()
