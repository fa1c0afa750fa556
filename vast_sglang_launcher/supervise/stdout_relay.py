"""Relaying output to the launcher's stdout/stderr without ever blocking the event loop.

Whoever reads the launcher's stdout (supervisord, a docker log driver, a terminal) may stall.
A blocking write in the event loop would then stop everything: probes, status.json, signal
handling, and through the full pipe the server itself. So the loop only *queues* bytes here;
a writer thread does the (possibly blocking) writes. The queue is bounded: when the reader
falls behind by more than ``max_bytes``, further lines are dropped and counted, and once the
reader has caught up (the queue is empty again) one line says how many were dropped. The
server's lines are all in sglang.log anyway: the log file is written before the relay.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import stat
import sys
import threading
from typing import BinaryIO, Protocol, runtime_checkable

DEFAULT_MAX_BYTES = 1024 * 1024
"""How far the reader may fall behind before lines are dropped."""


@runtime_checkable
class LineRelay(Protocol):
    """Where complete lines go: ``put`` never blocks; False when the lines were dropped."""

    def put(self, data: bytes, lines: int = 1) -> bool: ...

    def close(self, timeout: float = 1.0) -> None: ...


class DirectRelay:
    """Writes at once to a file object: for in-memory buffers (tests) and regular files."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream: BinaryIO | None = stream

    def put(self, data: bytes, lines: int = 1) -> bool:
        if self.stream is None:
            return False
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None  # gone (a closed pipe): nothing more to write there
            return False
        return True

    def close(self, timeout: float = 1.0) -> None:
        self.stream = None


class StdoutRelay:
    """A bounded queue in front of a file descriptor, emptied by a daemon writer thread."""

    def __init__(self, fd: int, max_bytes: int = DEFAULT_MAX_BYTES, name: str = "stdout") -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self.name = name
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._dropped = 0
        self.dropped_total = 0
        self._closing = False
        self._broken = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"relay-{name}", daemon=True)
        self._thread.start()

    def put(self, data: bytes, lines: int = 1) -> bool:
        with self._cond:
            if self._broken or self._closing:
                return False
            if self._queued and self._queued + len(data) > self.max_bytes:
                self._dropped += lines
                self.dropped_total += lines
                return False
            self._queue.append(data)
            self._queued += len(data)
            self._cond.notify()
        return True

    @property
    def pending(self) -> int:
        """Bytes queued and not yet written."""
        with self._cond:
            return self._queued

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                blob = b"".join(self._queue)
                self._queue.clear()
            if not self._write(blob):
                return
            with self._cond:
                self._queued -= len(blob)
                caught_up = not self._queue
                dropped = self._dropped if caught_up else 0
                if dropped:
                    self._dropped = 0
            if dropped:
                notice = (
                    f"[vast-sglang-launcher] {dropped} line{'s' if dropped != 1 else ''} of "
                    f"output dropped: {self.name} was not read fast enough (the server's lines "
                    "are all in sglang.log)\n"
                )
                if not self._write(notice.encode()):
                    return

    def _write(self, blob: bytes) -> bool:
        view = memoryview(blob)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                with self._cond:
                    self._broken = True  # the reader is gone: drop everything from now on
                    self._queue.clear()
                    self._queued = 0
                return False
            view = view[written:]
        return True

    def close(self, timeout: float = 1.0) -> None:
        """Let the writer finish what is queued, waiting at most ``timeout`` seconds (a stalled
        reader must not keep the launcher from exiting)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)


class RelayText(io.TextIOBase):
    """A text stream for the launcher's own log lines that goes through a relay, whole lines
    at a time (a logger's message and its newline may come in two writes)."""

    def __init__(self, relay: LineRelay, fd: int) -> None:
        super().__init__()
        self.relay = relay
        self.fd = fd
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def write(self, text: str) -> int:
        with self._lock:
            buf = self._partial + text
            end = buf.rfind("\n")
            if end < 0:
                self._partial = buf
                return len(text)
            whole, self._partial = buf[: end + 1], buf[end + 1 :]
        self.relay.put(whole.encode("utf-8", "replace"), lines=whole.count("\n"))
        return len(text)

    def flush(self) -> None:
        pass


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) and stat.S_ISFIFO(sa.st_mode)


class StdioRelays:
    """Relays for the launcher's stdout (the server's lines) and stderr (its own log): one
    shared relay when both are the same pipe (supervisord's redirect_stderr), so that lines
    keep their order. A stream without a file descriptor (a test's capture) is written
    directly, or, for stderr, left to the logger as it is."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.stdout: LineRelay | None = None
        self.stderr: LineRelay | None = None
        self._err_fd: int | None = None
        out_fd, err_fd = _fd_of(sys.stdout), _fd_of(sys.stderr)
        if out_fd is not None:
            self.stdout = StdoutRelay(out_fd, max_bytes, "stdout")
        else:
            buffer = getattr(sys.stdout, "buffer", None)
            self.stdout = DirectRelay(buffer) if buffer is not None else None
        if err_fd is not None:
            self._err_fd = err_fd
            if isinstance(self.stdout, StdoutRelay) and _same_file(self.stdout.fd, err_fd):
                self.stderr = self.stdout
            else:
                self.stderr = StdoutRelay(err_fd, max_bytes, "stderr")

    def log_stream(self) -> RelayText | None:
        """A text stream for the launcher's log, or None to leave the logger as it is."""
        if self.stderr is None or self._err_fd is None:
            return None
        return RelayText(self.stderr, self._err_fd)

    def close(self, timeout: float = 1.0) -> None:
        for relay in {id(r): r for r in (self.stdout, self.stderr) if r is not None}.values():
            with contextlib.suppress(Exception):
                relay.close(timeout)


def _fd_of(stream: object) -> int | None:
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        os.fstat(fd)
    except (AttributeError, OSError, ValueError):
        return None
    return int(fd)
