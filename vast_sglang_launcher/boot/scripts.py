"""User scripts (HOTFIX_SCRIPT, PROVISIONING_SCRIPT): fetch from a URL or a path, save, run.

A URL is downloaded with redirects followed, connect/read timeouts, retries with backoff after
network errors and 5xx answers (never after 4xx), and a size limit. The script is saved with
Unix line endings and mode 0700 under LAUNCHER_RUN_DIR; one without a shebang runs with bash.
Its output goes to our stdout and is appended to a log file under LAUNCHER_LOG_DIR. Secrets
(a token in the URL, HF_TOKEN's value, ...) never appear in a log line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..errors import LauncherError
from ..files import write_atomic
from ..logs import get_logger
from ..redact import Redactor, redactor_for
from ..rotating_log import RotatingLog
from ..settings import Settings
from .tee import Completed, open_log, run_tee

log = get_logger(__name__)

_BACKOFF_INITIAL = 0.5
_BACKOFF_MAX = 10.0


class ScriptError(LauncherError):
    """A script could not be fetched or started; the message names the variable."""


class _Retryable(Exception):
    """A download attempt that may succeed when tried again (network error, 5xx)."""


def is_url(source: str) -> bool:
    """Whether a script source is an http(s) URL (anything else is a local path)."""
    return urlsplit(source.strip()).scheme.lower() in ("http", "https")


def to_unix(data: bytes) -> bytes:
    """CRLF line endings converted to LF (a script saved on Windows runs)."""
    return data.replace(b"\r\n", b"\n")


def script_argv(path: Path, data: bytes) -> list[str]:
    """How to run a saved script: itself when it has a shebang, else with bash."""
    return [str(path)] if data.startswith(b"#!") else ["bash", str(path)]


def download(
    url: str,
    *,
    var: str,
    timeout: float,
    retries: int,
    max_bytes: int,
    redact: Redactor,
    backoff: float = _BACKOFF_INITIAL,
) -> bytes:
    """The body of `url`; ScriptError (naming `var`, the URL redacted) when it cannot be had."""
    shown = redact.url(url)
    client = httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": f"vast-sglang-launcher/{__version__}"},
    )
    with client:
        attempt = 0
        while True:
            try:
                return _get(client, url, var=var, shown=shown, max_bytes=max_bytes, redact=redact)
            except _Retryable as exc:
                if attempt >= retries:
                    raise ScriptError(
                        f"{var}: could not download {shown}: {exc} "
                        f"(tried {attempt + 1} times); check the URL and the network"
                    ) from None
                delay = min(backoff * 2**attempt, _BACKOFF_MAX)
                log.warning(
                    "download failed; retrying", var=var, url=shown, error=str(exc), retry_in=delay
                )
                time.sleep(delay)
                attempt += 1


def _too_large(var: str, shown: str, max_bytes: int) -> ScriptError:
    return ScriptError(
        f"{var}: {shown} is larger than {max_bytes} bytes; point {var} at the script itself "
        "or raise LAUNCHER_DOWNLOAD_MAX_BYTES"
    )


def _get(
    client: httpx.Client, url: str, *, var: str, shown: str, max_bytes: int, redact: Redactor
) -> bytes:
    try:
        with client.stream("GET", url) as resp:
            status = f"HTTP {resp.status_code} {resp.reason_phrase}".strip()
            if resp.status_code >= 500:
                raise _Retryable(status)
            if resp.status_code >= 400:
                raise ScriptError(
                    f"{var}: {shown} answered {status}; check the URL "
                    "(it must serve the script itself, without a login)"
                )
            if resp.status_code >= 300:
                raise ScriptError(f"{var}: {shown} answered {status} without a usable redirect")
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _too_large(var, shown, max_bytes)
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(var, shown, max_bytes)
            return bytes(body)
    except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as exc:
        raise ScriptError(f"{var}: cannot download {shown}: {redact(str(exc))}") from None
    except httpx.TransportError as exc:
        detail = redact(str(exc)) or type(exc).__name__
        raise _Retryable(f"{type(exc).__name__}: {detail}") from None
    except httpx.HTTPError as exc:
        raise ScriptError(f"{var}: cannot download {shown}: {redact(str(exc))}") from None


def read_local(source: str, *, var: str, max_bytes: int) -> bytes:
    """The bytes of a local script (`/path`, `~/path` or `file:///path`)."""
    text = source.strip()
    path = Path(urlsplit(text).path if text.startswith("file://") else text).expanduser()
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise ScriptError(f"{var}: unsupported scheme {scheme!r}; give an http(s) URL or a path")
    try:
        if not path.is_file():
            raise ScriptError(
                f"{var}: {path} is not a file; give an http(s) URL or the path of a script"
            )
        if path.stat().st_size > max_bytes:
            raise ScriptError(
                f"{var}: {path} is larger than {max_bytes} bytes; raise LAUNCHER_DOWNLOAD_MAX_BYTES"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ScriptError(f"{var}: cannot read {path}: {exc.strerror or exc}") from None


def save(data: bytes, dest: Path) -> None:
    """Write a script with mode 0700, atomically (a running copy is never overwritten)."""
    write_atomic(dest, data, 0o700)


def fetch(var: str, source: str, dest: Path, settings: Settings, redact: Redactor) -> bytes:
    """Fetch a script from a URL or path into `dest` (LF endings, mode 0700); its bytes."""
    if is_url(source):
        data = download(
            source.strip(),
            var=var,
            timeout=settings.download_timeout,
            retries=settings.download_retries,
            max_bytes=settings.download_max_bytes,
            redact=redact,
        )
    else:
        data = read_local(source, var=var, max_bytes=settings.download_max_bytes)
    data = to_unix(data)
    try:
        save(data, dest)
    except OSError as exc:
        raise ScriptError(f"{var}: cannot save the script to {dest}: {exc}") from None
    return data


def describe(source: str, redact: Redactor) -> str:
    """A script source fit for a log line."""
    return redact.url(source.strip()) if "://" in source else redact(source.strip())


def run_script(
    var: str, source: str, name: str, settings: Settings, env: Mapping[str, str]
) -> Completed:
    """Fetch and run one script; `name` names its saved copy and its log (`name`.log).

    ScriptError when it cannot be fetched or started; its exit status otherwise.
    """
    redact = redactor_for(settings, source)
    shown = describe(source, redact)
    log_path = settings.log_dir / f"{name}.log"
    log.info(f"{name}: fetching {var}", source=shown)
    dest = settings.run_dir / f"{name}.sh"
    data = fetch(var, source, dest, settings, redact)
    cwd = settings.workspace if settings.workspace.is_dir() else None
    log_file = open_log(log_path, settings.log_max_bytes, settings.log_backups)
    try:
        _note(log_file, f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} {name}: {shown}\n")
        log.info(f"{name}: running {var}", source=shown, log=str(log_path))
        try:
            done = run_tee(script_argv(dest, data), env=env, log_file=log_file, cwd=cwd)
        except OSError as exc:
            raise ScriptError(f"{var}: cannot run the script: {exc.strerror or exc}") from None
        _note(log_file, f"==> {name}: exit status {done.status}\n")
        return done
    finally:
        if log_file is not None:
            log_file.close()


def _note(log_file: RotatingLog | None, text: str) -> None:
    """A line of our own in the log file, between the runs of a script."""
    if log_file is None:
        return
    with contextlib.suppress(OSError, ValueError):
        log_file.write(text.encode())
        log_file.flush()
