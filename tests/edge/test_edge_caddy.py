"""The auth edge with the real Caddy: `python -m vast_sglang_launcher edge` in front of a tiny
upstream, called over HTTP(S) the way a browser and an API client call it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
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
from conftest import CHECKOUT, Reaper, launcher_argv, launcher_env, run_launcher, wait_for_port

from vast_sglang_launcher.edge.caddyfile import FAIL_CLOSED_BODY, auth_cookie

CADDY = shutil.which("caddy")
REPO = str(Path(__file__).resolve().parents[2])
"""The launcher under test runs from this checkout, whatever else is installed."""
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
        self.gate: threading.Semaphore | None = None
        """When set, each streamed piece after the first waits for a release (lock-step)."""
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
                    if i and upstream.gate is not None:
                        upstream.gate.acquire(timeout=60)
                    elif i:
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
        # the upstream stands for a ready server: the status writer's marker says so (else
        # the edge answers with the loading page, tests/edge/test_loading_page.py)
        run_dir.mkdir()
        (run_dir / "serving").touch()
        full_env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": CHECKOUT,  # the launcher of this checkout, not an installed one
            "LAUNCHER_RUN_DIR": str(run_dir),
            "LAUNCHER_PORTAL_YAML": str(tmp_path / f"portal{n}.yaml"),
            "LAUNCHER_SERVER_PORT": str(upstream.port),
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
                    launcher_argv("edge"),
                    env=launcher_env(full_env),
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
    assert attributes["Max-Age"] == str(12 * 3600)  # AUTH_COOKIE_MAX_AGE default (issue 11)
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


def test_streamed_responses_arrive_in_chunks(start_edge: StartEdge, upstream: Upstream) -> None:
    """The upstream sends each piece only after the client got the one before: a proxy that
    held a chunk back (until the end, or until more arrived) would stall this to a read
    timeout, however fast or slow the machine."""
    upstream.gate = threading.Semaphore(0)
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    pieces = []
    with edge.client(timeout=30).stream(
        "POST",
        edge.url("/v1/chat/completions"),
        headers=bearer(TOKEN),
        content=b'{"stream": true}',
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                pieces.append(json.loads(line.removeprefix("data: "))["piece"])
                upstream.gate.release()  # now the next one
    assert pieces == list(range(STREAM_PIECES))


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


def _https_edge(start_edge: StartEdge, tmp_path: Path) -> tuple[Edge, httpx.Client]:
    """An edge with ENABLE_HTTPS and a fresh self-signed certificate, and a client trusting it."""
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
    return edge, client


def test_https_serves_tls_with_the_instance_certificate(
    start_edge: StartEdge, tmp_path: Path
) -> None:
    edge, client = _https_edge(start_edge, tmp_path)
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
        launcher_argv("edge", "--print"),
        env=launcher_env({"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO, **env}),
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


# --- issue 11: configuration injection ---------------------------------------------------------

# Every Caddyfile metacharacter, a newline, and the placeholders Caddy expands: `{$X}` while it
# reads the Caddyfile, `{env.X}` and `{file.X}` while it serves.
HOSTILE = [
    "{$PORTAL_CONFIG}",
    "{env.OPEN_BUTTON_TOKEN}",
    "{file./etc/passwd}",
    '"',
    "\\",
    "#",
    "{",
    "}",
    "$",
    "\n",
    '"}\nhttp://:1 {\n\trespond "pwned" 200\n}\n#',
    "\\x{41} €",
]
MARKER = "MARKER-OF-THE-LAUNCHER-ENVIRONMENT"
"""Present in the environment of `caddy adapt`: a `{$X}` that reached Caddy would show it."""


def _adapt(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """`edge --print` with `env`, then Caddy's own parser on the result (`caddy adapt`), run
    with an environment whose every variable holds MARKER."""
    printed = run_launcher(
        "edge", "--print", env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO, **env}
    )
    assert printed.returncode == 0, printed.stderr
    path = tmp_path / "Caddyfile"
    path.write_text(printed.stdout)
    assert CADDY is not None
    marked = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PORTAL_CONFIG": MARKER,
        "OPEN_BUTTON_TOKEN": MARKER,
        "X": MARKER,
    }
    adapted = subprocess.run(
        [CADDY, "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        env=marked,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert MARKER not in adapted.stdout
    data: dict[str, Any] = json.loads(adapted.stdout)
    return data


_OUR_PLACEHOLDERS = {
    "{http.request.uri}",
    "{http.request.uri.query}",
    "{http.request.uri.query.token}",
    "{http.request.header.Accept}",
    "{http.request.header.Sec-Fetch-Dest}",
    "{edge_location}",
    "{edge_token_pair1}",
    "{edge_token_pair2}",
    "{edge_token_pair3}",
    "{http.error.status_code}",
}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _shape(value: Any) -> Any:
    """The structure of an adapted config: keys, handlers, matchers, dial addresses and
    listeners, with the regular expressions and header values (derived from secrets) left
    out."""
    if isinstance(value, dict):
        shaped = {}
        for k, v in value.items():
            if k in ("pattern", "Set-Cookie", "input_regexp", "find"):
                continue
            if k.startswith("{") or k in ("Authorization", "Cookie"):
                shaped[k] = "..."
                continue
            shaped[k] = _shape(v)
        return shaped
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, str) and len(value) > 80:
        return "<text>"
    return value


def _servers(data: dict[str, Any]) -> dict[str, Any]:
    servers: dict[str, Any] = data["apps"]["http"]["servers"]
    return servers


PORTS = "localhost:28000:28001:/:API|localhost:28100:28101:/:Other"


def _baseline(tmp_path: Path, **env: str) -> dict[str, Any]:
    return _adapt(tmp_path, {"OPEN_BUTTON_TOKEN": "plain", "PORTAL_CONFIG": PORTS, **env})


@pytest.fixture(scope="module")
def baseline_shape(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[bool], Any]:
    """The shape of the plain values' config, with and without WEB_PASSWORD: made once per
    worker for the hundred-odd hostile cases that compare against it."""
    made: dict[bool, Any] = {}

    def shape(with_password: bool) -> Any:
        if with_password not in made:
            extra = {"WEB_PASSWORD": "p"} if with_password else {}
            made[with_password] = _shape(_baseline(tmp_path_factory.mktemp("baseline"), **extra))
        return made[with_password]

    return shape


def _check_only_ours(data: dict[str, Any]) -> None:
    for text in _strings(data):
        # `\x{20ac}` is a regex escape, not a placeholder
        for placeholder in re.findall(r"(?<!\\x)\{[^{}\s]*\}", text):
            assert placeholder in _OUR_PLACEHOLDERS or re.fullmatch(r"\{\d+\}", placeholder), (
                placeholder,
                text,
            )
    # the responses Caddy can give are ours alone
    bodies = re.findall(r'"body": ("(?:[^"\\]|\\.)*")', json.dumps(data))
    assert bodies and not any("pwned" in body or "leak" in body for body in bodies), bodies


def test_the_reported_injection_adds_no_site(tmp_path: Path) -> None:
    """The exploit of issue 11: a self-referencing name that added an open site on :28009."""
    exploit = (
        "localhost:28000:28001:/:API {$PORTAL_CONFIG}\nhttp://:28009 {\n"
        '\trespond "leak={env.OPEN_BUTTON_TOKEN}"\n}\n#'
    )
    data = _adapt(tmp_path, {"OPEN_BUTTON_TOKEN": "plain", "PORTAL_CONFIG": exploit})
    assert [s["listen"] for s in _servers(data).values()] == [[":28000"]]
    _check_only_ours(data)
    ref = _adapt(
        tmp_path, {"OPEN_BUTTON_TOKEN": "plain", "PORTAL_CONFIG": "localhost:28000:28001:/:API"}
    )
    assert _shape(data) == _shape(ref)


@pytest.mark.parametrize("text", HOSTILE, ids=[ascii(t)[1:-1][:24] for t in HOSTILE])
@pytest.mark.parametrize("where", ["name", "host", "path", "token", "password", "username"])
def test_hostile_values_adapt_to_exactly_the_expected_servers_and_routes(
    tmp_path: Path, text: str, where: str, baseline_shape: Callable[[bool], Any]
) -> None:
    env = {"OPEN_BUTTON_TOKEN": "plain", "PORTAL_CONFIG": PORTS}
    if where in ("name", "host", "path"):
        field = {"host": 0, "path": 3, "name": 4}[where]
        parts = ["localhost", "28000", "28001", "/", "API"]
        parts[field] = (parts[field] + text).replace("|", "")
        if where != "name":
            parts[field] = parts[field].replace(":", "")
        env["PORTAL_CONFIG"] = ":".join(parts) + "|localhost:28100:28101:/:Other"
    elif where in ("token", "password"):
        var = "OPEN_BUTTON_TOKEN" if where == "token" else "WEB_PASSWORD"
        env[var] = where[0] + text
        if "\n" in text:  # a line break in a secret is refused (issue 19 item 1)
            refused = run_launcher(
                "edge",
                "--print",
                env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO, **env},
            )
            assert refused.returncode == 78 and refused.stdout == ""
            assert refused.stderr.startswith(f"vast-sglang-launcher: {var}='***'")
            assert refused.stderr.count("\n") == 1
            return
    elif where == "username":
        env["WEB_USERNAME"] = "u" + text.replace(":", "")  # ':' is refused, tested elsewhere
        if "\n" in text:  # one line only: refused before anything is written
            refused = run_launcher(
                "edge",
                "--print",
                env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": REPO, **env},
            )
            assert refused.returncode == 78 and refused.stdout == ""
            assert refused.stderr.startswith("vast-sglang-launcher: WEB_USERNAME=")
            assert refused.stderr.count("\n") == 1
            return
    data = _adapt(tmp_path, env)
    assert sorted(s["listen"][0] for s in _servers(data).values()) == [":28000", ":28100"]
    _check_only_ours(data)
    assert _shape(data) == baseline_shape(where == "password")


@pytest.mark.parametrize("text", ["{$X}", "{env.X}", "{file./etc/passwd}", '"', "\\", "\n"])
def test_tls_paths_with_metacharacters_are_refused(tmp_path: Path, text: str) -> None:
    proc = run_launcher(
        "edge",
        "--print",
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": REPO,
            "OPEN_BUTTON_TOKEN": "t",
            "ENABLE_HTTPS": "true",
            "LAUNCHER_TLS_KEY": f"/etc/k{text}.pem",
        },
    )
    assert proc.returncode == 78
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "LAUNCHER_TLS_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_reported_injection_serves_nothing_on_the_injected_port(
    start_edge: StartEdge, upstream: Upstream, port_factory: Callable[[], int]
) -> None:
    port, injected = port_factory(), port_factory()
    exploit = (
        f"localhost:{port}:{upstream.port}:/:API {{$PORTAL_CONFIG}}\nhttp://:{injected} {{\n"
        '\trespond "leak={env.OPEN_BUTTON_TOKEN}"\n}\n#'
    )
    edge = start_edge(wait=False, OPEN_BUTTON_TOKEN=TOKEN, PORTAL_CONFIG=exploit)
    wait_for_port(port, edge.proc)
    assert edge.client().get(f"http://127.0.0.1:{port}/").status_code == 401
    with pytest.raises(httpx.ConnectError):
        edge.client().get(f"http://127.0.0.1:{injected}/")
    assert upstream.requests == []


def test_caddy_runs_with_a_minimal_environment(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, WEB_PASSWORD="pw", HF_TOKEN="hf_secret")
    environ = dict(
        item.split(b"=", 1)
        for item in Path(f"/proc/{edge.proc.pid}/environ").read_bytes().split(b"\0")
        if item
    )
    allowed = {b"PATH", b"HOME", b"XDG_DATA_HOME", b"XDG_CONFIG_HOME", b"TZ", b"LANG", b"LC_ALL"}
    assert set(environ) <= allowed | {b"SSL_CERT_FILE", b"SSL_CERT_DIR"}, environ
    assert environ[b"HOME"] == str(edge.run_dir / "caddy").encode()
    for value in environ.values():
        assert b"hf_secret" not in value and value != b"pw"


# --- issue 11: the token never reaches the service or a log --------------------------------------


@pytest.mark.parametrize(
    "path, seen",
    [
        ("/v1/models?token={t}", "/v1/models"),
        ("/v1/models?token={t}&x=1", "/v1/models?x=1"),
        ("/v1/models?x=1&token={t}&y=%2F", "/v1/models?x=1&y=%2F"),
        ("/v1/models?x=1&%74oken={t}", "/v1/models?x=1"),
        ("/v1/models?token={t}&token=other&x=1", "/v1/models?x=1"),
        ("/v1/models?token", "/v1/models"),
        ("/v1/models?tokens=1&mytoken=2", "/v1/models?tokens=1&mytoken=2"),
    ],
)
def test_token_parameters_are_removed_before_proxying(
    start_edge: StartEdge, upstream: Upstream, path: str, seen: str
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    url = edge.url(path.format(t=quote(TOKEN, safe="")))
    # the link alone authenticates (the console's probe); two token values do not
    alone = "{t}" in path and path.count("oken") == 1
    r = client.get(url, headers={} if alone else bearer(TOKEN))
    assert r.status_code == 200, r.text
    assert r.json()["path"] == seen
    r = client.post(url, headers=bearer(TOKEN), json={"a": 1})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == seen


def test_more_token_parameters_than_the_edge_removes_are_refused(
    start_edge: StartEdge, upstream: Upstream
) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    r = edge.client().get(edge.url("/x?token=a&token=b&token=c&token=d"), headers=bearer(TOKEN))
    assert r.status_code == 400
    assert upstream.requests == []


def test_the_token_is_in_no_log_while_the_service_is_down(
    start_edge: StartEdge, port_factory: Callable[[], int]
) -> None:
    """On a 502 (SGLang still loading) the edge answers with its page (issue 18), and neither
    the page nor Caddy's log holds the token. (Whether Caddy logs a handled error depends on
    its release, modules/caddyhttp/server.go `ServeHTTP`: at debug level in some, at error
    level for a 5xx in others; Debian 12's 2.6.2 logs nothing here. Either way through the
    log filter of the Caddyfile's global options.)"""
    port, down = port_factory(), port_factory()
    token = "edge-log-secret-7e3f"
    edge = start_edge(
        wait=False, OPEN_BUTTON_TOKEN=token, PORTAL_CONFIG=f"localhost:{port}:{down}:/:API"
    )
    wait_for_port(port, edge.proc)
    client = edge.client()
    for headers in ({}, bearer(token), {"Referer": f"http://x/?token={token}"}):
        r = client.get(f"http://127.0.0.1:{port}/v1/models?x=1&token={token}", headers=headers)
        assert r.status_code == 502 and "nothing answers" in r.text
        assert token not in r.text
    r = client.get(f"http://127.0.0.1:{port}/v1/models", auth=("vastai", token))
    assert r.status_code == 502 and "nothing answers" in r.text
    edge.proc.send_signal(signal.SIGTERM)
    edge.proc.wait(15)
    output = edge.output()
    assert token not in output


# --- issue 11: the cookie ----------------------------------------------------------------------


def test_the_cookie_value_is_not_a_token(start_edge: StartEdge, upstream: Upstream) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN)
    client = edge.client()
    r = client.get(edge.url("/?token=" + quote(TOKEN, safe="")), headers=BROWSER)
    name, value = auth_cookie(TOKEN)
    assert r.headers["set-cookie"].startswith(f"{name}={value};")
    client.cookies.clear()
    assert client.get(edge.url("/v1/models"), headers=bearer(value)).status_code == 401
    assert client.get(edge.url("/v1/models"), auth=("vastai", value)).status_code == 401
    assert client.get(edge.url(f"/v1/models?token={value}")).status_code == 401
    # a cookie named like the one under HTTPS is not accepted over HTTP
    other = {"Cookie": f"__Host-{name}={value}"}
    assert client.get(edge.url("/v1/models"), headers=other).status_code == 401
    assert upstream.requests == []


def test_cookie_lifetime_follows_the_setting(start_edge: StartEdge) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, AUTH_COOKIE_MAX_AGE="3600")
    r = edge.client().get(edge.url("/?token=" + quote(TOKEN, safe="")), headers=BROWSER)
    assert r.status_code == 302
    assert "; Max-Age=3600;" in r.headers["set-cookie"]


def test_https_cookie_has_the_host_prefix(start_edge: StartEdge, tmp_path: Path) -> None:
    edge, client = _https_edge(start_edge, tmp_path)
    r = client.get(edge.url("/?token=" + quote(TOKEN, safe="")), headers=BROWSER)
    assert r.status_code == 302
    name, value = auth_cookie(TOKEN, https=True)
    assert name.startswith("__Host-vast_sglang_auth_")
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{name}={value}; Path=/;")
    assert "; Secure" in set_cookie and "Domain" not in set_cookie
    client.cookies.clear()
    with_cookie = {"Cookie": f"{name}={value}"}
    assert client.get(edge.url("/v1/models"), headers=with_cookie).status_code == 200
    plain_name, _ = auth_cookie(TOKEN)
    without_prefix = {"Cookie": f"{plain_name}={value}"}
    assert client.get(edge.url("/v1/models"), headers=without_prefix).status_code == 401


def test_link_login_can_be_turned_off(start_edge: StartEdge, upstream: Upstream) -> None:
    edge = start_edge(OPEN_BUTTON_TOKEN=TOKEN, AUTH_LINK_LOGIN="false")
    client = edge.client()
    link = "?token=" + quote(TOKEN, safe="")
    r = client.get(edge.url("/" + link), headers=BROWSER)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert client.get(edge.url("/v1/models" + link)).status_code == 401
    name, value = auth_cookie(TOKEN)
    assert client.get(edge.url("/"), headers={"Cookie": f"{name}={value}"}).status_code == 401
    assert upstream.requests == []
    # the Authorization header still works, and a token parameter is still removed
    r = client.get(edge.url("/v1/models" + link + "&x=1"), headers=bearer(TOKEN))
    assert r.status_code == 200 and r.json()["path"] == "/v1/models?x=1"
    assert client.get(edge.url("/"), auth=("vastai", TOKEN)).status_code == 200


# --- issue 11: strict values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, var",
    [
        ({"AUTH_EXCLUDE": "²"}, "AUTH_EXCLUDE"),
        ({"AUTH_EXCLUDE": "9" * 5000}, "AUTH_EXCLUDE"),
        ({"AUTH_EXCLUDE": "28_000"}, "AUTH_EXCLUDE"),
        ({"PORTAL_CONFIG": "localhost:٢٨٠٠٠:28001:/:API"}, "PORTAL_CONFIG"),
        ({"PORTAL_CONFIG": "localhost:28_000:28001:/:API"}, "PORTAL_CONFIG"),
        ({"PORTAL_CONFIG": "localhost:28000:" + "1" * 5000 + ":/:API"}, "PORTAL_CONFIG"),
        ({"ENABLE_AUTH": "off"}, "ENABLE_AUTH"),
        ({"ENABLE_AUTH": "n"}, "ENABLE_AUTH"),
        ({"ENABLE_AUTH": "f"}, "ENABLE_AUTH"),
        ({"AUTH_LINK_LOGIN": "off"}, "AUTH_LINK_LOGIN"),
        ({"AUTH_COOKIE_MAX_AGE": "inf"}, "AUTH_COOKIE_MAX_AGE"),
        ({"LAUNCHER_STOP_TIMEOUT": "inf"}, "LAUNCHER_STOP_TIMEOUT"),
        ({"LAUNCHER_RUN_DIR": "/" + "r" * 100_000}, "LAUNCHER_RUN_DIR"),
    ],
    ids=lambda v: ascii(v)[:30] if isinstance(v, str) else None,
)
def test_bad_edge_values_stop_the_edge_with_one_line(
    start_edge: StartEdge, upstream: Upstream, env: dict[str, str], var: str
) -> None:
    edge = start_edge(wait=False, OPEN_BUTTON_TOKEN=TOKEN, **env)
    assert edge.proc.wait(30) == 78
    output = edge.output()
    assert output.count("\n") == 1, output
    assert output.startswith(f"vast-sglang-launcher: {var}") and "Traceback" not in output
    assert len(output) < 600


def test_a_token_full_of_placeholders_is_compared_literally(start_edge: StartEdge) -> None:
    """Placeholders and metacharacters in the token are neither expanded nor interpreted: the
    exact bytes get in, what a placeholder would expand to does not."""
    token = 'x{env.HOME}{$PATH}{file./etc/hostname}{http.request.uri}"\\#$€ {'
    edge = start_edge(OPEN_BUTTON_TOKEN=token)
    client = edge.client()
    exact = {b"Authorization": f"Bearer {token}".encode()}
    assert client.get(edge.url("/v1/models"), headers=exact).status_code == 200
    home = os.environ.get("HOME", "/root")
    expanded = token.replace("{env.HOME}", home)
    for wrong in (expanded, "x", token.replace("€", "?"), "x{env.HOME}"):
        header = {b"Authorization": f"Bearer {wrong}".encode()}
        assert client.get(edge.url("/v1/models"), headers=header).status_code == 401
    link = edge.url("/v1/models?token=" + quote(token, safe=""))
    assert client.get(link).status_code == 200
    assert client.get(edge.url("/"), auth=("vastai", token)).status_code == 200


# --- issue 18: Vast's own templates ------------------------------------------------------------


def test_vast_sglang_template_publishes_links_and_answers_down_services(
    start_edge: StartEdge, upstream: Upstream, port_factory: Callable[[], int]
) -> None:
    """The shape of Vast's SGLang template (tests/edge/test_edge.py VAST_SGLANG_TEMPLATE) on
    free ports: a `/docs` path on the API, a Model UI and a Jupyter with no service behind
    them, and `Jupyter Terminal` as a second link to Jupyter's published port."""
    portal, ui, api, jupyter = (port_factory() for _ in range(4))
    down = [port_factory() for _ in range(3)]
    config = (
        f"localhost:{portal}:{down[0]}:/:Instance Portal|localhost:{ui}:{down[1]}:/:Model UI"
        f"|localhost:{api}:{upstream.port}:/docs:SGLang API"
        f"|localhost:{jupyter}:{down[2]}:/:Jupyter"
        f"|localhost:{jupyter}:{jupyter}:/terminals/1:Jupyter Terminal"
    )
    edge = start_edge(wait=False, OPEN_BUTTON_TOKEN=TOKEN, PORTAL_CONFIG=config)
    for port in (portal, ui, api, jupyter):
        wait_for_port(port, edge.proc)
    client = edge.client()
    # the API is proxied whole, whatever path the portal opens
    for path in ("/docs", "/v1/models"):
        r = client.get(edge.url(path, api), headers=bearer(TOKEN))
        assert (r.status_code, r.json()["path"]) == (200, path)
    # ports with no service: a page that says so, after authentication only
    for port, internal, path in ((ui, down[1], "/"), (jupyter, down[2], "/terminals/1")):
        assert client.get(edge.url(path, port)).status_code == 401
        r = client.get(edge.url(path, port), headers=bearer(TOKEN))
        assert r.status_code == 502
        assert f"nothing answers behind port {port} (127.0.0.1:{internal})" in r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["cache-control"] == "no-store"
    assert edge.proc.poll() is None
    apps = json.loads(edge.portal_yaml.read_text())["applications"]
    assert apps["Jupyter Terminal"]["open_path"] == "/terminals/1"
    assert apps["SGLang API"]["open_path"] == "/docs"


# --- worker mode: the gateway's /health probe, and nothing else (issue 19 item 5) ------------


def _raw_get(port: int, target: str) -> int:
    """Status of `GET target` sent byte for byte (httpx would normalise the path)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            got = sock.recv(4096)
            if not got:
                break
            data += got
    return int(data.split(b" ", 2)[1])


BYPASSES = [
    "/v1/models/../../health",
    "/v1/models%2F..%2F..%2Fhealth",
    "/v1/models/%2e%2e/%2e%2e/health",
    "/HEALTH",
    "/Health",
    "//health",
    "/health/",
    "/./health",
    "/health%2f",
    "/health?token=" + "x",
    "/health?x=1",
    "/%68ealth",
]


def test_worker_mode_lets_only_the_exact_health_probe_through(
    start_edge: StartEdge, upstream: Upstream
) -> None:
    edge = start_edge(
        OPEN_BUTTON_TOKEN="probe-token-1234",
        LAUNCHER_GATEWAY_URL="http://127.0.0.1:9",
        LAUNCHER_WORKER_URL="http://127.0.0.1:8",
    )
    assert _raw_get(edge.port, "/health") == 200
    assert upstream.requests[-1]["path"] == "/health"  # forwarded as matched
    seen = len(upstream.requests)
    for target in BYPASSES:
        assert _raw_get(edge.port, target) == 401, target
    assert len(upstream.requests) == seen  # none of them reached SGLang
    # with the token, a token parameter is stripped on every route, /health's included
    c = edge.client()
    got = c.get(edge.url("/health?token=probe-token-1234"))
    assert got.status_code == 200 and upstream.requests[-1]["path"] == "/health"
    assert "probe-token-1234" not in json.dumps(upstream.requests)
