"""The server's output: passed through unchanged, line by line, to stdout and sglang.log.

The server's stdout and stderr arrive merged on one pipe. Complete lines are written as the
bytes they are (no re-encoding, no prefix) to the launcher's stdout, which supervisord
captures, and appended to ``$LAUNCHER_LOG_DIR/sglang.log``; the last few are kept, decoded,
to explain a failure. The asyncio protocol also reports the server's exit as soon as the
process is reaped, without waiting for the pipe to close (children may still hold it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

READY_MARK = b"The server is fired up and ready to roll"
MAX_LINE = 64 * 1024
"""A "line" longer than this is passed on in pieces."""
_TAIL_CHARS = 2000


class OutputSink:
    """Where server lines go: the launcher's stdout, the log file, and the tail."""

    def __init__(self, stdout: BinaryIO | None, log_path: Path | None, tail_lines: int) -> None:
        self.stdout = stdout
        self.log_path = log_path
        self.log_error: str | None = None
        self._log: BinaryIO | None = None
        if log_path is not None:
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(log_path, "ab")  # noqa: SIM115 - open for the launcher's life
            except OSError as exc:
                self.log_error = f"{log_path}: {exc.strerror or exc}"
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)

    def write(self, lines: list[bytes]) -> None:
        """Pass complete lines (each ending in a newline, or a final fragment) through."""
        blob = b"".join(lines)
        if self.stdout is not None:
            try:
                self.stdout.write(blob)
                self.stdout.flush()
            except (OSError, ValueError):
                self.stdout = None  # stdout is gone (closed pipe): keep the log file going
        if self._log is not None:
            try:
                self._log.write(blob)
                self._log.flush()
            except OSError as exc:
                self.log_error = f"{self.log_path}: {exc.strerror or exc}"
                with contextlib.suppress(OSError):
                    self._log.close()
                self._log = None
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if "\r" in text:  # a progress bar redrawn in place: keep what it shows last
                text = text.rsplit("\r", 1)[-1]
            self.tail.append(text[:_TAIL_CHARS])

    def note(self, lines: list[str]) -> None:
        """Add the launcher's own lines to the log file only (a reader of sglang.log sees why
        the server was given up on); stdout gets them from the launcher's log instead."""
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.write(b"".join(f"[vast-sglang-launcher] {x}\n".encode() for x in lines))
                self._log.flush()

    def last_lines(self) -> list[str]:
        return list(self.tail)

    def close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


class ServerProtocol(asyncio.SubprocessProtocol):
    """Reads the merged output pipe and tells the supervisor about readiness and exit."""

    def __init__(
        self,
        sink: OutputSink,
        on_ready_line: Callable[[], None],
        on_exit: Callable[[], None],
        on_lines: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self.sink = sink
        self.on_ready_line = on_ready_line
        self.on_exit = on_exit
        self.on_lines = on_lines
        """Every batch of complete lines, after they are passed on, and [] for output without
        a whole line (load phases, stall watchdog)."""
        self._partial = b""
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ready_line_seen = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buf = self._partial + data
        end = buf.rfind(b"\n")
        if end < 0:
            lines = []
            self._partial = buf
        else:
            lines = [line + b"\n" for line in buf[:end].split(b"\n")]
            self._partial = buf[end + 1 :]
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        if not lines:
            if self.on_lines is not None:
                self.on_lines([])  # output moved without a whole line (a progress bar)
            return
        self.sink.write(lines)
        if self.on_lines is not None:
            self.on_lines(lines)
        if not self.ready_line_seen and any(READY_MARK in line for line in lines):
            self.ready_line_seen = True
            self.on_ready_line()

    def _flush_partial(self) -> None:
        if self._partial:
            self.sink.write([self._partial + b"\n"])
            self._partial = b""

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._flush_partial()

    def process_exited(self) -> None:
        self.exited = True
        self.on_exit()

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush_partial()
        if not self.closed.done():
            self.closed.set_result(None)

    @property
    def returncode(self) -> int | None:
        return self.transport.get_returncode() if self.transport is not None else None
