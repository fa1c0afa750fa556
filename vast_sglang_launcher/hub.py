"""The one way to the model hub: `huggingface_hub`, with the launcher's settings.

Shared by the plan (the model's config.json, the weights' size) and the cold start (the
file list and the download). `hub_access` is the one place the settings become a
`HubAccess`. Every call passes the endpoint (HF_ENDPOINT), the token (HF_TOKEN), the cache
directory (HF_HUB_CACHE / HF_HOME / the workspace) and the revision explicitly, and nothing
here contacts the hub when HF_HUB_OFFLINE is set. Errors become a `HubProblem`: one line for
the log and status.json, its kind, and whether the server can still be started.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .hub_cache import any_snapshot_config
from .settings import Settings
from .values import looks_local, repo_id_problem

T = TypeVar("T")

DOWNLOAD_CHUNK = 64 * 1024
"""Bytes the hub client reads before it writes them to the partial file (this process)."""
_NETWORK_NAMES = ("Connect", "Timeout", "Network", "RemoteProtocol", "ReadError", "Proxy")


DOWNLOAD_TIMEOUT_FLOOR = 10.0
"""Seconds the download's requests wait at least for an answer, however short a plan's
LAUNCHER_MODEL_INFO_TIMEOUT is (a download runs beside provisioning, a plan is waited for)."""


@dataclass(frozen=True)
class HubAccess:
    """How to reach the hub: the launcher's HF_ENDPOINT, HF_TOKEN, timeouts and offline mode.

    timeout: each request of a plan (LAUNCHER_MODEL_INFO_TIMEOUT); download_timeout: each
    request of the weight download (the file list, each file's metadata)."""

    endpoint: str
    token: str | None
    timeout: float
    offline: bool = False
    download_timeout: float = DOWNLOAD_TIMEOUT_FLOOR

    def for_download(self) -> HubAccess:
        """The same access with the download's timeout for every request."""
        return dataclasses.replace(self, timeout=self.download_timeout)


def hub_access(settings: Settings) -> HubAccess:
    """The settings' way to the hub (the one construction of a `HubAccess`)."""
    return HubAccess(
        settings.hf_endpoint,
        settings.hf_token.get_secret_value() if settings.hf_token else None,
        settings.model_info_timeout,
        settings.hf_hub_offline,
        max(settings.model_info_timeout, DOWNLOAD_TIMEOUT_FLOOR),
    )


@dataclass(frozen=True)
class HubProblem(Exception):
    """A hub request that failed, said in one line.

    kind: gated, not_found, revision, disk, network or error. fatal: starting the server
    cannot help (a definite 404, or a gated repo and no token).
    """

    kind: str
    line: str
    fatal: bool = False

    def __str__(self) -> str:
        return self.line


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    etag: str | None
    """The blob name in the HF cache: the LFS sha256, else the git blob id."""


@dataclass(frozen=True)
class RepoListing:
    repo: str
    revision: str
    commit: str
    files: tuple[RepoFile, ...]


def quiet_hub_client() -> None:
    """Keep the hub client's own log lines off the user's terminal: its retry lines ("'[Errno
    -2] Name or service not known' thrown while requesting HEAD ...", "Retrying in 1s [Retry
    1/5].", huggingface_hub 1.x/2.x utils/_http.py, _http_backoff_base, logger
    `huggingface_hub.utils._http`) go to the handler that utils/logging.py
    (_configure_library_root_logger) puts on the `huggingface_hub` logger; the launcher says
    what failed itself, in one line (classify, fetch_config)."""
    logging.getLogger("huggingface_hub").setLevel(logging.CRITICAL + 1)


def is_repo_id(model: str) -> bool:
    """True when `model` names a hub repo rather than a local directory (the settings and
    the plan refuse a value that is neither, so False here means a local path)."""
    if looks_local(model) or Path(model).expanduser().exists():
        return False
    return repo_id_problem(model) is None


def classify(exc: BaseException, repo: str, token_set: bool) -> HubProblem:
    """One line, a kind and the consequence for a failed hub request."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = _status(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return HubProblem("disk", f"{repo}: the disk is full ({exc.strerror})")
    if isinstance(exc, GatedRepoError) or (
        isinstance(exc, RepositoryNotFoundError) and status in (401, 403)
    ):
        if not token_set:
            return HubProblem(
                "gated",
                f"{repo} is gated or private (HTTP {status}) and HF_TOKEN is not set: accept "
                "its licence on the hub and set HF_TOKEN",
                fatal=True,
            )
        return HubProblem(
            "gated",
            f"{repo} is gated or private (HTTP {status}) and HF_TOKEN has no access to it: "
            "accept its licence on the hub with the token's account, or use another token",
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubProblem(
            "revision", f"{repo} has no revision of that name (HTTP 404): check --revision", True
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubProblem(
            "not_found",
            f"{repo} does not exist on the hub (HTTP {status or 404}): check SGLANG_MODEL",
            fatal=status == 404,
        )
    if isinstance(exc, HfHubHTTPError) and status is not None:
        return HubProblem("error", f"{repo}: the hub answered HTTP {status}")
    if isinstance(exc, LocalEntryNotFoundError) or _is_network(exc):
        return HubProblem("network", f"{repo}: cannot reach the hub ({_cause(exc)})")
    if isinstance(exc, OSError):
        # e.g. huggingface_hub's "Consistency check failed: ...\nThis is usually due to ...":
        # one line (file_download.py http_get, 2.4.0).
        return HubProblem("error", f"{repo}: {_clip(str(exc.strerror or exc))}")
    return HubProblem("error", f"{repo}: {type(exc).__name__}: {_clip(str(exc))}")


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_network(exc: BaseException) -> bool:
    return any(
        any(n in type(e).__name__ for n in _NETWORK_NAMES) or isinstance(e, ConnectionError)
        for e in _chain(exc)
    )


def _cause(exc: BaseException, timeout: float | None = None) -> str:
    """What went wrong on the way to the hub, in words. huggingface_hub raises its HTTP
    client's errors (httpx / httpx2 ConnectError, ReadTimeout, ...) whose chain ends in the
    socket's: socket.gaierror (no DNS), ConnectionRefusedError, TimeoutError, ssl.SSLError."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f"the hub's name does not resolve (no network or no DNS: {e.strerror or e})"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ssl.SSLError):
            return f"TLS failed ({e.reason or e})"
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        within = f" within {timeout:g} s" if timeout is not None else ""
        return f"no answer{within}"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
    return f"{type(exc).__name__}: {_clip(str(exc))}" if str(exc) else type(exc).__name__


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- model info: config.json ---------------------------------------------------------------


def fetch_config(
    repo: str, revision: str | None, hub_cache: Path, hub: HubAccess
) -> tuple[dict[str, Any] | None, str, str | None]:
    """The repo's config.json: from the HF cache when it is there, else from the hub (it is
    then kept in the cache). Returns (config, where it came from, None) or (None, "", a
    warning saying why not). Never contacts the hub in offline mode."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, try_to_load_from_cache

    quiet_hub_client()
    cached = try_to_load_from_cache(repo, "config.json", cache_dir=hub_cache, revision=revision)
    path = Path(cached) if isinstance(cached, str) else any_snapshot_config(hub_cache, repo)
    if path is not None and (isinstance(cached, str) or hub.offline):
        return read_config(path, f"HF cache {path}")
    if hub.offline:
        return (
            None,
            "",
            f"{repo} is not in the HF cache and HF_HUB_OFFLINE is set: heads not checked",
        )
    url = f"{hub.endpoint.rstrip('/')}/{repo}/resolve/{revision or 'main'}/config.json"
    timeout = f"within {hub.timeout:g} s (LAUNCHER_MODEL_INFO_TIMEOUT)"
    try:
        # One HEAD without the client's retries first: it fails at once with the real
        # cause (hf_hub_download retries network errors with a backoff, file_download.py
        # _hf_hub_download_to_cache_dir, retry_on_errors=True, beyond any plan's patience).
        _within(
            hub.timeout,
            lambda: get_hf_file_metadata(
                url, token=hub.token or None, timeout=hub.timeout, endpoint=hub.endpoint
            ),
        )
        got = _within(
            hub.timeout,
            lambda: hf_hub_download(
                repo,
                "config.json",
                revision=revision,
                cache_dir=hub_cache,
                endpoint=hub.endpoint,
                token=hub.token or None,
                etag_timeout=hub.timeout,
            ),
        )
    except TimeoutError:
        return None, "", f"cannot fetch {url}: no answer {timeout}: heads not checked"
    except Exception as exc:
        problem = classify(exc, repo, hub.token is not None)
        status = _status(exc)
        if problem.kind == "gated":
            hint = "set HF_TOKEN" if not hub.token else "check that HF_TOKEN has access"
            return (
                None,
                "",
                (
                    f"{repo} config.json answered {status} (gated or private model?): "
                    f"{hint}; heads not checked"
                ),
            )
        if problem.kind == "network":
            cause = _cause(exc)
            if cause == "no answer":
                cause = f"no answer {timeout}"
            return None, "", f"cannot fetch {url}: {cause}: heads not checked"
        if problem.kind in ("not_found", "revision") or status == 404:
            return None, "", f"{url} answered 404: {problem.line}; heads not checked"
        if status is not None:
            return None, "", f"{url} answered {status}: heads not checked"
        return None, "", f"cannot fetch {url}: {problem.line}: heads not checked"
    source = f"hub {hub.endpoint.rstrip('/')}/{repo}@{revision or 'main'}"
    return read_config(Path(got), source)


def _within(seconds: float, call: Callable[[], T]) -> T:
    """`call()` in a daemon thread, abandoned after `seconds` (TimeoutError): the client
    retries network errors with a backoff of its own, which must not hold up a plan."""
    box: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name="hub", daemon=True)
    thread.start()
    thread.join(seconds)
    if error:
        raise error[0]
    if not box:
        raise TimeoutError
    return box[0]


def read_config(path: Path, source: str) -> tuple[dict[str, Any] | None, str, str | None]:
    """The one config.json reader (a local model directory's, the HF cache's, the hub's):
    (config, `source`, None) or (None, "", a warning saying why not)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, "", f"cannot read {path}: {exc}: heads not checked"
    if not isinstance(data, dict):
        return None, "", f"{path} is not a JSON object: heads not checked"
    return data, source, None


# --- the file list and the download --------------------------------------------------------


LIST_RETRY_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before each new try of the file listing after a 429 or a 5xx answer."""


def list_files(
    repo: str,
    revision: str | None,
    hub: HubAccess,
    warn: Callable[[str], None] = lambda line: None,
    waits: tuple[float, ...] = LIST_RETRY_WAITS,
) -> RepoListing:
    """The repo's files with their sizes at `revision` (HubProblem on failure). A 429 (rate
    limit) or 5xx answer is tried again after each of `waits` (`warn` says so):
    huggingface_hub 2.4.0 hf_api.py `model_info` sends one GET and raises on its status
    (`hf_raise_for_status`), with no retry of its own."""
    from huggingface_hub import HfApi

    quiet_hub_client()
    api = HfApi(endpoint=hub.endpoint, token=hub.token or None)
    left = list(waits)
    while True:
        try:
            info = api.model_info(repo, revision=revision, files_metadata=True, timeout=hub.timeout)
            break
        except Exception as exc:
            problem = classify(exc, repo, hub.token is not None)
            status = _status(exc)
            if left and status is not None and (status == 429 or status >= 500):
                wait = left.pop(0)
                warn(f"{problem.line} listing the files; trying again in {wait:g} s")
                time.sleep(wait)
                continue
            raise problem from None
    files = []
    for s in info.siblings or []:
        etag = s.lfs.sha256 if s.lfs is not None else s.blob_id
        size = s.lfs.size if s.lfs is not None else s.size
        files.append(RepoFile(s.rfilename, int(size or 0), etag))
    return RepoListing(repo, revision or "main", str(info.sha), tuple(files))


def download(
    listing: RepoListing, paths: list[str], hub_cache: Path, hub: HubAccess, connections: int
) -> Path:
    """Download `paths` of the listed commit into the HF cache (`snapshot_download`, its
    cache layout and hf-xet's fast path when installed). HubProblem on failure."""
    import glob

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.utils.tqdm import disable_progress_bars

    quiet_hub_client()
    disable_progress_bars()  # the launcher reports progress itself, every 10 s at most
    # huggingface_hub 2.4.0 file_download.py http_get writes what
    # `response.iter_bytes(chunk_size=constants.DOWNLOAD_CHUNK_SIZE)` yields, 10 MiB by
    # default (constants.py), read at each call: bytes then reach the disk, where the
    # progress and the stall watchdog count them, in 10 MiB steps. Small steps instead.
    constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_CHUNK
    try:
        folder = snapshot_download(
            listing.repo,
            revision=listing.revision,
            cache_dir=hub_cache,
            endpoint=hub.endpoint,
            token=hub.token or None,
            allow_patterns=[glob.escape(p) for p in paths],
            max_workers=connections,
            etag_timeout=hub.timeout,
        )
    except Exception as exc:
        raise classify(exc, listing.repo, hub.token is not None) from None
    return Path(folder)
