"""The prefetch's status file, `$LAUNCHER_RUN_DIR/prefetch.json`, and the download's bytes
in the HF cache (the record of complete downloads is the shared `hub_cache`).

The prefetch process owns `prefetch.json` and rewrites it atomically about once a second:
state (`starting`, `listing`, `downloading`, `done`, `skipped`, `failed`), the owner's pid
and start time, the repo, bytes done and total, and on failure one line, its kind, whether
the server may still start (`fatal`) and what happens next. Readers (`run`, `status`) never
write it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import markers
from ..files import write_atomic
from ..hub_cache import repo_dir
from ..redact import Redactor

STATUS_FILE = "prefetch.json"
RUNNING = ("starting", "listing", "downloading")


def status_path(run_dir: Path) -> Path:
    return run_dir / STATUS_FILE


def write_status(path: Path, doc: dict[str, Any], secrets: Sequence[str] = ()) -> None:
    """Rewrite prefetch.json (mode 0600: a detail line may name a URL), every string masked
    with `secrets` (redact.settings_secrets)."""
    doc = Redactor(secrets).data({**doc, "updated_at": time.time()})
    write_atomic(path, json.dumps(doc, indent=1) + "\n", 0o600)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owner_alive(doc: dict[str, Any]) -> bool:
    """Whether the process that writes `doc` still runs (not a reused pid)."""
    pid, started = doc.get("pid"), doc.get("pid_started")
    if not isinstance(pid, int):
        return False
    return markers.is_alive(
        markers.Owner(pid, float(started) if isinstance(started, (int, float)) else None)
    )


def partial_files(count: int) -> str:
    """``1 partial file``, ``3 partial files``: the one wording of every removal line."""
    return f"{count} partial file{'s' if count != 1 else ''}"


def stopped_detail(removed: int) -> str:
    """prefetch.json's detail line of a download the launcher stopped."""
    return "stopped by the launcher" + (f" (removed {partial_files(removed)})" if removed else "")


def _blobs(hub_cache: Path, repo: str) -> Path:
    return repo_dir(hub_cache, repo) / "blobs"


def bytes_on_disk(hub_cache: Path, repo: str, files: list[tuple[str, int, str | None]]) -> int:
    """Bytes of `files` (path, size, blob name) on disk now, the partial blobs of the running
    download included (`<blob>.<id>.incomplete`): the download's progress, counted from the
    bytes as they land (the prefetch removes earlier boots' partials before it starts)."""
    return _sum_blobs(hub_cache, repo, files, partial=True)


def reusable_bytes(hub_cache: Path, repo: str, files: list[tuple[str, int, str | None]]) -> int:
    """Bytes of `files` that a download will not fetch again: complete blobs only.

    huggingface_hub 2.4.0 file_download.py `_download_to_tmp_and_move` writes each download
    to a new `<blob>.<uuid8>.incomplete` opened "wb" (never resumed: the name is unique to
    the process) and renames it to `<blob>` when complete, so a partial file is never reused.
    """
    return _sum_blobs(hub_cache, repo, files, partial=False)


def _sum_blobs(
    hub_cache: Path, repo: str, files: list[tuple[str, int, str | None]], partial: bool
) -> int:
    blobs = _blobs(hub_cache, repo)
    try:
        names = os.listdir(blobs)
    except OSError:
        return 0
    have: dict[str, int] = {}
    for name in names:
        if not partial and "." in name:
            continue
        blob = name.split(".", 1)[0]  # blob names are hex digests: no dot in them
        with contextlib.suppress(OSError):
            have[blob] = max(have.get(blob, 0), (blobs / name).stat().st_size)
    return sum(min(size, have.get(etag, 0)) for _path, size, etag in files if etag is not None)


def remove_orphan_partials(hub_cache: Path, repo: str) -> tuple[int, int]:
    """Remove the partial blobs (`*.incomplete`) of `repo` that no running download writes;
    returns (files, bytes) removed.

    A download holds huggingface_hub's lock `.locks/models--X/<blob>.lock` while it writes
    (2.4.0 file_download.py, `WeakFileLock(lock_path)` around `_download_to_tmp_and_move`;
    filelock 4.3.1 `_native/_unix.py` takes it with `fcntl.flock(LOCK_EX | LOCK_NB)`): a
    partial whose lock can be taken here has no writer left, and no download can reuse it.
    """
    import fcntl

    blobs = _blobs(hub_cache, repo)
    locks = hub_cache / ".locks" / ("models--" + repo.replace("/", "--"))
    try:
        names = sorted(n for n in os.listdir(blobs) if n.endswith(".incomplete"))
    except OSError:
        return 0, 0
    count = size = 0
    for name in names:
        path = blobs / name
        lock = locks / f"{name.split('.', 1)[0]}.lock"
        fd = None
        try:
            if lock.exists():
                fd = os.open(lock, os.O_RDWR)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = path.stat().st_size
            path.unlink()
            count, size = count + 1, size + got
        except OSError:  # BlockingIOError: a live download writes it
            continue
        finally:
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock
    return count, size


def own_partials(hub_cache: Path, repo: str) -> list[Path]:
    """The partial blobs of `repo` that this process has open (its running download)."""
    import psutil

    blobs = str(_blobs(hub_cache, repo)) + os.sep
    try:
        opened = psutil.Process().open_files()
    except psutil.Error:
        return []
    return [
        Path(f.path) for f in opened if f.path.startswith(blobs) and f.path.endswith(".incomplete")
    ]
