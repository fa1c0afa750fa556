"""The server's output: passed through unchanged, line by line, to sglang.log and stdout.

A line ends at a newline or at a carriage return: SGLang's weight-loading progress bar
(tqdm, "Loading safetensors checkpoint shards: 50% Completed | 1/2", model_loader/
weight_utils.py) is redrawn after a carriage return with no newline from 0.5.10 (utils/
common.py BAR_FORMAT), and would otherwise be seen only when loading ends. The bytes pass on
as they came; only the tail keeps the bar's last drawing.

The server's stdout and stderr arrive merged on one pipe. Complete lines are written as the
bytes they are (no re-encoding, no prefix) first to ``$LAUNCHER_LOG_DIR/sglang.log`` (rotated
by size), then handed to a relay for the launcher's stdout, which supervisord captures: the
relay never blocks the event loop, whoever reads stdout (`stdout_relay`). The last few lines
are kept, decoded, to explain a failure. The asyncio protocol also reports the server's exit
as soon as the process is reaped, without waiting for the pipe to close (children may still
hold it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..redact import Redactor
from ..rotating_log import RotatingLog
from .stdout_relay import DirectRelay, LineRelay

READY_MARK = b"The server is fired up and ready to roll"
_LINE_END = re.compile(rb"\r\n|\n|\r")
MAX_LINE = 64 * 1024
"""A "line" longer than this is passed on in pieces."""
_TAIL_CHARS = 2000
DEFAULT_LOG_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 3


def _no_warning(message: str) -> None:
    pass


class OutputSink:
    """Where server lines go: the log file, the launcher's stdout (through a relay), the tail.

    ``stdout`` is a relay, a binary file object (written at once: tests, regular files), or
    None. A log file that cannot be written (a full disk) is reported once through ``warn``;
    writing resumes, with a second note, as soon as it works again.
    """

    def __init__(
        self,
        stdout: LineRelay | BinaryIO | None,
        log_path: Path | None,
        tail_lines: int,
        *,
        max_bytes: int = DEFAULT_LOG_MAX_BYTES,
        backups: int = DEFAULT_LOG_BACKUPS,
        warn: Callable[[str], None] = _no_warning,
    ) -> None:
        self.relay: LineRelay | None
        if stdout is None or isinstance(stdout, LineRelay):
            self.relay = stdout
        else:
            self.relay = DirectRelay(stdout)
        self.log_path = log_path
        self.log_error: str | None = None
        self.warn = warn
        self._failing = False
        self._missed = 0
        self._log: RotatingLog | None = None
        if log_path is not None:
            log = RotatingLog(log_path, max_bytes, backups)
            try:
                log.open()
                self._log = log
            except OSError as exc:
                self.log_error = f"{log_path}: {exc.strerror or exc}"
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._redrawn = False  # the tail's last entry is a drawing of a progress bar
        self.redact: Redactor | None = None
        """Secrets to mask in every line passed on (SGLang prints its whole `server_args`,
        `--api-key` included, at start): set for each start of the server."""

    def _to_log(self, blob: bytes, lines: int) -> None:
        if self._log is None:
            return
        try:
            self._log.write(blob)
        except OSError as exc:
            self._missed += lines
            if not self._failing:
                self._failing = True
                self.log_error = f"{self.log_path}: {exc.strerror or exc}"
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                self.warn(
                    f"cannot write the server's output to {self.log_path}: "
                    f"{exc.strerror or exc}"
                    + ("; free some disk space" if full else "")
                    + "; serving goes on, and the lines still go to stdout"
                )
            return
        if self._failing:
            self._failing = False
            self.log_error = None
            self.warn(
                f"{self.log_path} is writable again; {self._missed} line"
                f"{'s' if self._missed != 1 else ''} of server output are missing from it"
            )
            self._missed = 0

    def write(self, lines: list[bytes]) -> None:
        """Pass complete lines (each ending in a newline, or a final fragment) through."""
        if self.redact is not None:
            redact = self.redact
            lines = [
                redact(line.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
                for line in lines
            ]
        blob = b"".join(lines)
        self._to_log(blob, len(lines))
        if self.relay is not None:
            self.relay.put(blob, len(lines))
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if "\r" in text:  # a progress bar redrawn in place: keep what it shows last
                text = text.rsplit("\r", 1)[-1]
            if self._redrawn and self.tail:
                self.tail.pop()  # the same bar, drawn again
            self.tail.append(text[:_TAIL_CHARS])
            self._redrawn = line.endswith(b"\r")

    def note(self, lines: list[str]) -> None:
        """Add the launcher's own lines to the log file only (a reader of sglang.log sees why
        the server was given up on); stdout gets them from the launcher's log instead."""
        if self._log is not None and not self._failing:
            blob = b"".join(f"[vast-sglang-launcher] {x}\n".encode() for x in lines)
            with contextlib.suppress(OSError):
                self._log.write(blob)

    def last_lines(self) -> list[str]:
        return list(self.tail)

    def close(self) -> None:
        if self._log is not None:
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
        """Every batch of complete lines, after they are passed on, plus the unfinished
        line so far, if any (load phases, stall watchdog)."""
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
        lines = []
        start = 0
        for end in _LINE_END.finditer(buf):
            if end.group() == b"\r" and end.end() == len(buf):
                break  # maybe the first half of a CRLF: wait for the next bytes
            lines.append(buf[start : end.end()])
            start = end.end()
        self._partial = buf[start:]
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            self.sink.write(lines)
        if self.on_lines is not None:
            # tqdm draws "\r" + the bar: the drawing now is the text after the last "\r",
            # ended only by the next one. It is shown (phases, shard progress) as it comes;
            # it reaches the log file and stdout once ended. [] when nothing but an
            # unfinished line moved.
            self.on_lines(lines + ([self._partial] if self._partial else []))
        if not lines:
            return
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
