"""`loading-page`: the small HTTP handler that answers the API port while SGLang is not ready.

Why a handler of the launcher and not Caddy's own templates: the answer is computed from
status.json (message, ETA, a timeline with durations, masked log lines), must never be a 500
on a partial or garbage file, and must be the same for the JSON and the page. Caddy 2.6.2's
`templates` (modules/caddyhttp/templates/tplcontext.go, with sprig's functions) could read
the file, but any template error is answered 500 (templates.go, `Templates.ServeHTTP`), and
formatting bytes, rates and ETAs in Go templates would be a second copy of
`coldstart.phases`. Caddy still decides where each request goes, at no cost a benchmark sees
(BENCHMARKS.md): the `file` matcher (2.6.2 modules/caddyhttp/fileserver/matcher.go,
`MatchFile.selectFile`: root + try_files, one stat) sees whether `$LAUNCHER_RUN_DIR/serving`
exists, and `handle_errors` (modules/caddyhttp/server.go, `Server.ServeHTTP` runs the
Errors routes on a handler error) catches a proxy that cannot reach SGLang (reverseproxy.go
`statusError`: 502 on a dial error, 504 on a timeout). Both go to this handler over a Unix
socket (a `unix/PATH` upstream, reverseproxy/addresses.go `parseUpstreamDialAddress`), so it
needs no port of its own and only Caddy (the same user; mode 0600) reaches it;
authentication stays in Caddy, in front of it.

Every request gets 503: JSON in OpenAI's error shape for API clients, the page for a
browser (a GET or HEAD asking for HTML, as the edge's token link decides). `Retry-After`
except after a give-up. The page carries the same JSON and polls its own URL for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socketserver
import stat
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..logs import get_logger
from ..redact import Redactor, argv_secrets, settings_secrets
from ..settings import Settings
from ..supervise.status import SERVING_MARKER
from ..words import split_words
from .caddyfile import LOADING_SOCKET
from .loading_html import page
from .loading_view import loading_view

LOG_TAIL_BYTES = 16384
MAX_DRAIN = 1 << 20
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the terminating NUL

log = get_logger("loading-page")

# SGLang logs its ServerArgs at start: 0.5.6.post2 entrypoints/engine.py `Engine.__init__`
# (`logger.info(f"{server_args=}")`, the dataclass repr, api_key='...'); 0.5.23 the same
# place through `_server_args_for_logging` (a dict: 'api_key': '...').
_SECRET_FIELDS = re.compile(
    r"""((?:api_key|admin_api_key|ssl_keyfile_password|hf_token|token)['"]?\s*[=:]\s*)"""
    r"""(?:'[^']*'|"[^"]*"|[^\s,)}]+)"""
)


def socket_path(settings: Settings) -> Path:
    return settings.run_dir / LOADING_SOCKET


def serving_marker(settings: Settings) -> Path:
    return settings.run_dir / SERVING_MARKER


class Answers:
    """What the handler answers, read afresh from the files on every request."""

    def __init__(self, settings: Settings) -> None:
        self.status = settings.status_file
        self.server_log = settings.log_dir / "sglang.log"
        secrets = settings_secrets(settings)
        with contextlib.suppress(ConfigError, OSError, UnicodeDecodeError):
            words = split_words(settings.sglang_args, "SGLANG_ARGS")
            if settings.sglang_args_file.is_file():
                words += split_words(settings.sglang_args_file.read_text(), "args file")
            secrets += argv_secrets(words)
        self.redact = Redactor(secrets)

    def _read_status(self) -> dict[str, Any] | None:
        try:
            with open(self.status, "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def _log_lines(self) -> list[str]:
        """The server's last lines (progress bars end in \\r, not \\n), masked."""
        try:
            with open(self.server_log, "rb") as f:
                start = max(0, os.fstat(f.fileno()).st_size - LOG_TAIL_BYTES)
                f.seek(start)
                tail = f.read(LOG_TAIL_BYTES)
        except OSError:
            return []
        pieces = re.split(r"[\r\n]+", tail.decode("utf-8", "replace"))
        lines = [line for line in pieces[1 if start else 0 :] if line.strip()]  # whole lines
        return [self.mask(line) for line in lines]

    def mask(self, line: str) -> str:
        return _SECRET_FIELDS.sub(r"\1***", self.redact(line))

    def view(self) -> dict[str, Any]:
        data = self._read_status()
        state = data.get("state") if data else None
        # while loading, the log's tail; after a crash or a give-up, the writer's last lines
        lines = None if state in ("failed", "backoff") else self._log_lines()
        view = loading_view(data, lines)
        error = view["error"]
        error["last_lines"] = [self.mask(line) for line in error["last_lines"]]
        for key in ("message", "hint", "reason"):
            if isinstance(error.get(key), str):
                error[key] = self.mask(error[key])
        return view


def wants_html(method: str, accept: str, fetch_dest: str) -> bool:
    """A browser navigation, as the edge's token link reads it (caddyfile._auth_lines)."""
    return method in ("GET", "HEAD") and ("text/html" in accept or fetch_dest == "document")


def _handler(answers: Answers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send_response(self, code: int, message: str | None = None) -> None:
            """No `Server` header: Caddy sends its own."""
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def _drain(self) -> bool:
            """Read the request body away (Caddy is still sending it); False: too big."""
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                total = 0
                while total <= MAX_DRAIN:
                    size_line = self.rfile.readline(1024)
                    try:
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    except ValueError:
                        return False
                    if size == 0:
                        while self.rfile.readline(1024).strip():
                            pass
                        return True
                    self.rfile.read(size + 2)
                    total += size
                return False
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return False
            if length > MAX_DRAIN or length < 0:
                return False
            if length:
                self.rfile.read(length)
            return True

        def _answer(self) -> None:
            keep = self._drain()
            try:
                view = answers.view()
            except Exception as exc:  # never a 500, never a traceback: "starting"
                log.warning("cannot read the status", error=str(exc))
                view = loading_view(None)
            retry = view.pop("retry_after")
            html = wants_html(
                self.command,
                self.headers.get("Accept") or "",
                self.headers.get("Sec-Fetch-Dest") or "",
            )
            if html:
                body = page(view).encode()
                ctype = "text/html; charset=utf-8"
            else:
                body = (json.dumps(view) + "\n").encode()
                ctype = "application/json"
            self.send_response(503)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            if html:
                self.send_header(
                    "Content-Security-Policy",
                    "default-src 'none'; script-src 'unsafe-inline'; style-src "
                    "'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'",
                )
            if retry is not None:
                self.send_header("Retry-After", str(retry))
            if not keep:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass  # Caddy logs the request (without its query); nothing to add

    return Handler


class LoadingServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False


def serve(settings: Settings) -> LoadingServer:
    """Bind the socket (a stale one is replaced) and return the server, not yet serving."""
    path = socket_path(settings)
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise ConfigError(
            f"LAUNCHER_RUN_DIR={settings.run_dir} is too long for the loading page's socket "
            f"({path}: over {SOCKET_PATH_MAX} bytes); set a shorter LAUNCHER_RUN_DIR"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    old = os.umask(0o077)
    try:
        server = LoadingServer(str(path), _handler(Answers(settings)))
    finally:
        os.umask(old)
    return server


def command_loading_page(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then remove the socket and exit 0."""
    server = serve(settings)
    path = socket_path(settings)
    serving_marker(settings).parent.mkdir(parents=True, exist_ok=True)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("answering the API port while SGLang is not ready", socket=str(path))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        with contextlib.suppress(OSError):
            path.unlink()
    return 0
