"""Log files that never grow without bound: rotated by size, a few numbered backups kept.

``sglang.log`` becomes ``sglang.log.1`` once it would pass LAUNCHER_LOG_MAX_BYTES, the older
backups move up one (``.1`` -> ``.2`` ...) and the oldest beyond LAUNCHER_LOG_BACKUPS is
deleted, as logrotate and Python's RotatingFileHandler do. One process writes each file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class RotatingLog:
    """A binary append-only file with size-based rotation. ``write`` raises OSError (a full
    disk, a removed directory); the caller decides whether to warn or go on."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: int | None = None
        self._size = 0

    def open(self) -> None:
        """Create the directory and open the file for appending (OSError when it cannot)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = os.fstat(self._fd).st_size

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, data: bytes) -> int:
        """Append ``data`` (rotating first when it would pass the size); OSError on failure.

        A chunk larger than the size (a busy server's burst, read at once) is written in
        whole-line pieces, so that no file passes the size unless one line alone does."""
        for piece in _line_pieces(data, self.max_bytes):
            self._append(piece)
        return len(data)

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        if self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def flush(self) -> None:
        """Nothing is buffered: here so that the object stands in for a binary file."""

    def rotate(self) -> None:
        """Move the file to ``.1`` (and older backups up one), then start an empty one."""
        self.close()
        if self.backups <= 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.path, 0)
        else:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                with contextlib.suppress(FileNotFoundError):
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _line_pieces(data: bytes, limit: int) -> list[bytes]:
    """``data`` cut after newlines into pieces of at most ``limit`` bytes (a longer line is
    a piece of its own, whole)."""
    pieces = []
    while len(data) > limit > 0:
        cut = data.rfind(b"\n", 0, limit) + 1
        if cut == 0:  # one line longer than the limit: up to its end
            cut = data.find(b"\n", limit) + 1 or len(data)
        pieces.append(data[:cut])
        data = data[cut:]
    if data:
        pieces.append(data)
    return pieces


def open_rotating(path: Path, max_bytes: int, backups: int) -> RotatingLog:
    """A RotatingLog opened for appending (OSError when it cannot be)."""
    log = RotatingLog(path, max_bytes, backups)
    log.open()
    return log
