"""The auth edge with the real Caddy: `python -m vast_sglang_launcher edge` in front of a tiny
upstream, called over HTTP(S) the way a browser and an API client call it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import CHECKOUT, Reaper, wait_for_port

from vast_sglang_launcher.edge.caddyfile import FAIL_CLOSED_BODY, auth_cookie

CADDY = shutil.which("caddy")
pytestmark = pytest.mark.skipif(
    CADDY is None and not os.environ.get("CI"),
    reason="caddy is not installed here (CI installs it and runs these tests)",
)

# quotes, spaces, braces, a placeholder-like `{$y}`, regex metacharacters, a backslash and
# the characters that matter in cookies and URLs
TOKEN = 'sk "q" {x} {$y} *.+?\\ ;=&#%'
STREAM_PIECES = 5
STREAM_INTERVAL = 0.3


class Upstream:
    """The proxied service: echoes what reached it; streams SSE chunks with pauses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body.decode(errors="replace"),
                }
                upstream.requests.append(seen)
                return seen

            def do_GET(self) -> None:
                data = json.dumps(self._record()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                seen = self._record()
                if '"stream": true' not in seen["body"]:
                    self.do_GET_reply(seen)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(STREAM_PIECES):
                    if i:
                        time.sleep(STREAM_INTERVAL)
                    chunk = f"data: {json.dumps({'piece': i})}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def do_GET_reply(self, seen: dict[str, Any]) -> None:
                data = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


@dataclass
class Edge:
    proc: subprocess.Popen[bytes]
    port: int
    open_port: int
    run_dir: Path
    portal_yaml: Path
    log: Path
    scheme: str = "http"
    clients: list[httpx.Client] = field(default_factory=list)

    def url(self, path: str = "/", port: int | None = None) -> str:
        return f"{self.scheme}://127.0.0.1:{port or self.port}{path}"

    def client(self, **kw: Any) -> httpx.Client:
        c = httpx.Client(**{"follow_redirects": False, "timeout": 10, **kw})
        self.clients.append(c)
        return c

    def output(self) -> str:
        return self.log.read_text(errors="replace")


StartEdge = Callable[..., Edge]


@pytest.fixture
def start_edge(
    tmp_path: Path, upstream: Upstream, reaper: Reaper, port_factory: Callable[[], int]
) -> Iterator[StartEdge]:
    """Run `edge` (which execs Caddy) publishing the upstream on two free ports; the second
    one is listed in AUTH_EXCLUDE only when a test asks for it."""
    edges: list[Edge] = []

    def start(wait: bool = True, **env: str) -> Edge:
        port, open_port = port_factory(), port_factory()
        n = len(edges)
        run_dir = tmp_path / f"run{n}"
        log = tmp_path / f"edge{n}.log"
        full_env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,  # the launcher of this checkout, not an installed one
            "LAUNCHER_RUN_DIR": str(run_dir),
            "LAUNCHER_PORTAL_YAML": str(tmp_path / f"portal{n}.yaml"),
            "SGLANG_PORT": str(upstream.port),
            "PORTAL_CONFIG": (
                f"localhost:{port}:{upstream.port}:/:SGLang API"
                f"|localhost:{open_port}:{upstream.port}:/:Open"
                "|localhost:8080:8080:/:Jupyter"
            ),
            **{k: v.replace("{open_port}", str(open_port)) for k, v in env.items()},
        }
        with open(log, "wb") as out:
            proc = reaper.add(
                subprocess.Popen(
                    [sys.executable, "-m", "vast_sglang_launcher", "edge"],
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
            )
        scheme = "https" if env.get("ENABLE_HTTPS") == "true" else "http"
        edge = Edge(proc, port, open_port, run_dir, tmp_path / f"portal{n}.yaml", log, scheme)
        edges.append(edge)
        if wait:
            try:
                wait_for_port(port, proc)
                wait_for_port(open_port, proc)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{edge.output()}") from None
        return edge

    yield start
    for edge in edges:
        for c in edge.clients:
            c.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


# --- who gets in -----------------------------------------------------------------------------


def test_no_credentials_is_401_with_a_basic_challenge(
    start_edge: StartEdge, upstream: Upstream
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    r = edge.client().get(edge.url("/v1/models"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Basic realm="')
    assert upstream.requests == []


@pytest.mark.parametrize(
    "headers, query",
    [
        (bearer("wrong"), ""),
        (bearer(TOKEN + "x"), ""),
        (bearer(TOKEN[:-1]), ""),
        ({"Authorization": f"Bearer  {TOKEN}"}, ""),
        ({"Authorization": TOKEN}, ""),
        ({"Authorization": f"Bearer {TOKEN}x", "X-Token": TOKEN}, ""),
        ({"Cookie": "vast_sglang_auth_0=deadbeef"}, ""),
        ({}, "?token=wrong"),
        ({}, "?token=" + quote(TOKEN[:-1])),
        ({}, "?tok=" + quote(TOKEN)),
    ],
    ids=[
        "wrong",
        "longer",
        "shorter",
        "two-spaces",
        "no-scheme",
        "elsewhere",
        "bad-cookie",
        "bad-link",
        "short-link",
        "other-param",
    ],
)
def test_wrong_credentials_are_401(
    start_edge: StartEdge, upstream: Upstream, headers: dict[str, str], query: str
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    assert client.get(edge.url("/v1/models" + query), headers=headers).status_code == 401
    browser = {**BROWSER, **headers}
    assert client.get(edge.url("/" + query), headers=browser).status_code == 401
    assert upstream.requests == []


def test_wrong_basic_credentials_are_401(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    for auth in [("vastai", "wrong"), ("root", TOKEN), ("vastai", TOKEN + "x")]:
        assert client.get(edge.url("/v1/models"), auth=auth).status_code == 401


def test_bearer_token_gets_through(start_edge: StartEdge, upstream: Upstream) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    r = client.get(edge.url("/v1/models?x=1"), headers=bearer(TOKEN))
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/v1/models?x=1"
    assert r.json()["headers"]["Authorization"] == f"Bearer {TOKEN}"
    # the scheme is case-insensitive, as HTTP says
    r = client.get(edge.url("/v1/models"), headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200


def test_basic_credentials_get_through(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    r = edge.client().get(edge.url("/v1/models"), auth=("vastai", TOKEN))
    assert r.status_code == 200, r.text


def test_web_username_and_password_replace_the_basic_defaults(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, WEB_USERNAME="ops", WEB_PASSWORD="pässwörd €")
    client = edge.client()
    assert client.get(edge.url("/"), auth=("ops", "pässwörd €")).status_code == 200
    assert client.get(edge.url("/"), auth=("vastai", TOKEN)).status_code == 401
    assert client.get(edge.url("/"), auth=("ops", TOKEN)).status_code == 401
    assert client.get(edge.url("/"), auth=("vastai", "pässwörd €")).status_code == 401
    # the token still works as a Bearer token and in a link
    assert client.get(edge.url("/"), headers=bearer(TOKEN)).status_code == 200
    link = edge.url("/?token=" + quote(TOKEN, safe=""))
    assert client.get(link, headers=BROWSER).status_code == 302


@pytest.mark.parametrize(
    "path, location",
    [
        ("/?token={t}", "/"),
        ("/lab/tree?token={t}", "/lab/tree"),
        ("/a?token={t}&b=2", "/a?b=2"),
        ("/a?x=1&token={t}", "/a?x=1"),
        ("/a%20b/?x=1&token={t}&y=%2F2", "/a%20b/?x=1&y=%2F2"),
        ("//evil.example/?token={t}", "/evil.example/"),
    ],
)
def test_token_link_sets_a_cookie_and_redirects_without_the_token(
    start_edge: StartEdge, upstream: Upstream, path: str, location: str
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    r = client.get(edge.url(path.format(t=quote(TOKEN, safe=""))), headers=BROWSER)
    assert r.status_code == 302, r.text
    assert r.headers["location"] == location
    name, value = auth_cookie(TOKEN)
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{name}={value}; ")
    attributes = {}
    for attribute in set_cookie.split(";")[1:]:
        key, _, val = attribute.strip().partition("=")
        attributes[key] = val
    assert attributes["Path"] == "/"
    assert attributes["SameSite"] == "Lax"
    assert attributes["Max-Age"] == str(7 * 24 * 3600)
    assert "HttpOnly" in attributes and "Secure" not in attributes
    assert upstream.requests == []
    # the client kept the cookie: the redirect target is served without the token
    assert client.cookies.get(name) == value
    r = client.get(edge.url(location), headers=BROWSER)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == location


def test_the_cookie_alone_gets_through(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    name, value = auth_cookie(TOKEN)
    cookies = {"Cookie": f"theme=dark; {name}={value}; other=1"}
    assert edge.client().get(edge.url("/v1/models"), headers=cookies).status_code == 200


def test_token_query_in_an_api_request_is_served_directly(
    start_edge: StartEdge, upstream: Upstream
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    link = "?token=" + quote(TOKEN, safe="")
    r = client.get(edge.url("/v1/models" + link), headers={"Accept": "application/json"})
    assert r.status_code == 200
    r = client.post(edge.url("/v1/chat/completions" + link), headers=BROWSER, json={"a": 1})
    assert r.status_code == 200
    assert r.json()["method"] == "POST"


def test_streamed_responses_arrive_in_chunks(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    arrivals = []
    start = time.monotonic()
    with edge.client().stream(
        "POST",
        edge.url("/v1/chat/completions"),
        headers=bearer(TOKEN),
        content=b'{"stream": true}',
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - start)
    total = (STREAM_PIECES - 1) * STREAM_INTERVAL
    assert len(arrivals) == STREAM_PIECES
    # the first chunk is not held back until the end, and they come spread out
    assert arrivals[0] < total / 2, arrivals
    assert arrivals[-1] - arrivals[0] > total * 0.6, arrivals


# --- configuration -------------------------------------------------------------------------


def test_auth_exclude_leaves_a_port_open(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, AUTH_EXCLUDE="{open_port}")
    client = edge.client()
    assert client.get(edge.url("/x", port=edge.open_port)).status_code == 200
    assert client.get(edge.url("/x")).status_code == 401


def test_enable_auth_false_publishes_without_authentication(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, ENABLE_AUTH="false")
    assert edge.client().get(edge.url("/v1/models")).status_code == 200
    assert "published without authentication" in edge.output()


def test_no_token_fails_closed_and_says_why(start_edge: StartEdge, upstream: Upstream) -> None:
    edge = start_edge()
    client = edge.client()
    for headers in ({}, {"Authorization": "Bearer"}, bearer("anything")):
        r = client.get(edge.url("/v1/models"), headers=headers)
        assert r.status_code == 401
        assert r.text == FAIL_CLOSED_BODY
    assert client.get(edge.url("/"), auth=("vastai", "")).status_code == 401
    assert upstream.requests == []
    assert "neither OPEN_BUTTON_TOKEN nor WEB_PASSWORD is set: refusing every request" in (
        edge.output()
    )


def test_password_without_token_allows_basic_only(start_edge: StartEdge) -> None:
    edge = start_edge(WEB_PASSWORD="pw")
    client = edge.client()
    assert client.get(edge.url("/"), auth=("vastai", "pw")).status_code == 200
    assert client.get(edge.url("/"), headers=bearer("pw")).status_code == 401
    assert client.get(edge.url("/?token=pw"), headers=BROWSER).status_code == 401


def test_https_serves_tls_with_the_instance_certificate(
    start_edge: StartEdge, tmp_path: Path
) -> None:
    cert, key = tmp_path / "instance.crt", tmp_path / "instance.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=instance", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    edge = start_edge(
        OPEN_BUTTON_TOKEN=TOKEN,
        ENABLE_HTTPS="true",
        LAUNCHER_TLS_CERT=str(cert),
        LAUNCHER_TLS_KEY=str(key),
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    client = edge.client(verify=context)
    assert client.get(edge.url("/v1/models")).status_code == 401
    assert client.get(edge.url("/v1/models"), headers=bearer(TOKEN)).status_code == 200
    r = client.get(edge.url("/?token=" + quote(TOKEN, safe="")), headers=BROWSER)
    assert r.status_code == 302
    assert "; Secure" in r.headers["set-cookie"]
    # plain HTTP on the port is not served
    with httpx.Client() as plain:
        assert plain.get(edge.url("/v1/models").replace("https:", "http:")).status_code == 400


# --- the process -----------------------------------------------------------------------------


def test_edge_execs_caddy_with_private_files_under_the_run_dir(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    pid = edge.proc.pid
    assert CADDY is not None
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(CADDY)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    caddyfile = edge.run_dir / "Caddyfile"
    assert cmdline[1:6] == [
        b"run",
        b"--config",
        str(caddyfile).encode(),
        b"--adapter",
        b"caddyfile",
    ]
    assert stat.S_IMODE(caddyfile.stat().st_mode) == 0o600
    environ = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if item
    )
    assert environ[b"XDG_DATA_HOME"] == str(edge.run_dir / "caddy" / "data").encode()
    assert environ[b"XDG_CONFIG_HOME"] == str(edge.run_dir / "caddy" / "config").encode()
    apps = json.loads(edge.portal_yaml.read_text())["applications"]
    assert apps["SGLang API"]["external_port"] == edge.port
    assert apps["Jupyter"]["internal_port"] == 8080


def test_sigterm_stops_caddy(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    edge.proc.send_signal(signal.SIGTERM)
    assert edge.proc.wait(15) == 0


def test_two_edges_run_side_by_side(start_edge: StartEdge) -> None:
    """No admin endpoint, no shared storage: instances do not collide."""
    one = start_edge(OPEN_BUTTON_TOKEN="one")
    two = start_edge(OPEN_BUTTON_TOKEN="two")
    assert one.client().get(one.url("/"), headers=bearer("one")).status_code == 200
    assert two.client().get(two.url("/"), headers=bearer("two")).status_code == 200
    assert one.proc.poll() is None and two.proc.poll() is None


def test_missing_caddy_is_a_config_error(start_edge: StartEdge) -> None:
    edge = start_edge(wait=False, OPEN_BUTTON_TOKEN="t", LAUNCHER_CADDY_BIN="no-such-caddy")
    assert edge.proc.wait(30) == 78
    assert "LAUNCHER_CADDY_BIN='no-such-caddy' is not an executable" in edge.output()


def test_https_without_the_certificate_is_a_config_error(
    start_edge: StartEdge, tmp_path: Path
) -> None:
    edge = start_edge(
        wait=False,
        OPEN_BUTTON_TOKEN="t",
        ENABLE_HTTPS="true",
        LAUNCHER_TLS_CERT=str(tmp_path / "missing.crt"),
    )
    assert edge.proc.wait(30) == 78
    assert "LAUNCHER_TLS_CERT" in edge.output() and "cannot be read" in edge.output()


@pytest.mark.parametrize(
    "env",
    [
        {"OPEN_BUTTON_TOKEN": TOKEN},
        {"OPEN_BUTTON_TOKEN": TOKEN, "WEB_PASSWORD": "x y", "AUTH_EXCLUDE": "1111"},
        {"WEB_PASSWORD": "pw"},
        {},
        {"ENABLE_AUTH": "false"},
        {"OPEN_BUTTON_TOKEN": "t", "ENABLE_HTTPS": "true"},
        {"PORTAL_CONFIG": "localhost:8080:8080:/:Jupyter"},
    ],
    ids=["token", "password-exclude", "password-only", "fail-closed", "no-auth", "https", "none"],
)
def test_rendered_caddyfiles_adapt_cleanly(tmp_path: Path, env: dict[str, str]) -> None:
    """Every variant is valid for this Caddy and already in `caddy fmt` form (no warnings)."""
    printed = subprocess.run(
        [sys.executable, "-m", "vast_sglang_launcher", "edge", "--print"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / "Caddyfile"
    path.write_text(printed.stdout)
    assert CADDY is not None
    adapted = subprocess.run(
        [CADDY, "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert "warn" not in adapted.stderr.lower(), adapted.stderr
    json.loads(adapted.stdout)
