"""Vast's serverless worker for SGLang. Runs in the worker's own venv with the `vastai`
package (`python pyworker.py SPEC.json`): it imports only the standard library and vastai,
never the launcher.

It follows sglang.log from where `program` says this boot begins (an `{"inode", "offset"}`
in the spec) into `model_log`, the file the worker tails: the worker reads its file from the
start (vastai 1.9.1 `lib/backend.py` `__read_logs.tail_log`), and sglang.log keeps the lines
of earlier boots, whose ready or give-up line must not count now. A rotation of sglang.log
(`rotating_log`) is followed into the new file; `model_log` is replaced by a fresh file when
it grows past MODEL_LOG_MAX (the worker reopens a file whose inode changed).

Exit status: 78 when vastai cannot be imported (LAUNCHER_SERVERLESS_PYTHON), 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

MODEL_LOG_MAX = 8 * 1024 * 1024
POLL = 0.1
"""Seconds between looks at sglang.log (the worker's own poll of its file, LOG_POLL_INTERVAL)."""


class LogFollower:
    """Copies the complete lines appended to `src` after (inode, offset) into `dst`."""

    def __init__(self, src: Path, dst: Path, inode: int | None, offset: int) -> None:
        self.src, self.dst = src, dst
        self.inode, self.offset = inode, offset
        self.partial = b""
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(b"")

    def _read(self, path: Path, offset: int) -> tuple[bytes, int]:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return data, offset + len(data)

    def poll(self) -> None:
        try:
            st = os.stat(self.src)
        except FileNotFoundError:
            return
        data = b""
        if self.inode is None:
            self.inode, self.offset = st.st_ino, 0
        elif st.st_ino != self.inode:
            # Rotated: the rest of the old file is sglang.log.1 now; then the new file.
            old = self.src.with_name(self.src.name + ".1")
            with contextlib.suppress(OSError):
                if os.stat(old).st_ino == self.inode:
                    data, _ = self._read(old, self.offset)
            self.inode, self.offset = st.st_ino, 0
        if st.st_size < self.offset:  # truncated
            self.offset = 0
        more, self.offset = self._read(self.src, self.offset)
        self._emit(data + more)

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial, whole = data[cut:], data[:cut]
        if not whole:
            return
        if self.dst.exists() and self.dst.stat().st_size + len(whole) > MODEL_LOG_MAX:
            fresh = self.dst.with_name(self.dst.name + ".new")
            fresh.write_bytes(b"")
            os.replace(fresh, self.dst)
        with open(self.dst, "ab") as fh:
            fh.write(whole)

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(POLL)


def _tokens(default: int) -> Any:
    def count(payload: dict[str, Any]) -> float:
        for key in ("max_tokens", "max_completion_tokens", "max_new_tokens"):
            value = payload.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
        return float(default)

    return count


def worker_config(spec: dict[str, Any], vast: Any) -> Any:
    """vastai's WorkerConfig from the spec (`worker_config.worker_spec`)."""
    handlers = []
    for route in spec["routes"]:
        bench = None
        if route == spec["benchmark_route"]:
            bench = vast.BenchmarkConfig(dataset=spec["benchmark"])
        handlers.append(
            vast.HandlerConfig(
                route=route,
                # SGLang batches requests: the worker passes them on as they come.
                allow_parallel_requests=True,
                max_queue_time=spec["max_queue_time"],
                benchmark_config=bench,
                workload_calculator=_tokens(spec["default_tokens"][route]),
            )
        )
    return vast.WorkerConfig(
        model_server_url=spec["model_server_url"],
        model_server_port=spec["model_server_port"],
        model_log_file=spec["model_log"],
        handlers=handlers,
        log_action_config=vast.LogActionConfig(on_load=spec["on_load"], on_error=spec["on_error"]),
    )


async def serve(spec: dict[str, Any], vast: Any) -> None:
    follower = LogFollower(
        Path(spec["server_log"]), Path(spec["model_log"]), spec["inode"], spec["offset"]
    )
    follower.poll()  # what is already there, before the worker opens the file
    worker = vast.Worker(worker_config(spec, vast))
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    follow = asyncio.ensure_future(follower.run())
    try:
        await worker.run_async()
    finally:
        follow.cancel()


def main(argv: list[str]) -> int:
    try:
        from vastai.serverless.server import worker as vast
    except ImportError as exc:
        print(
            f"serverless: {sys.executable} cannot import Vast's worker ({exc}); install "
            "`vastai` there or point LAUNCHER_SERVERLESS_PYTHON at a Python that has it",
            file=sys.stderr,
        )
        return 78
    spec = json.loads(Path(argv[1]).read_text())
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(serve(spec, vast))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
