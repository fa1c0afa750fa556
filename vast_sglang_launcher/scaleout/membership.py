"""Worker mode: keep this server registered with an SGLang gateway while it is ready.

`GatewayMembership` is the observer that supervise calls at two moments of each start:

- `on_ready()` once the server answers `/health`: a background task registers the server
  (`POST /workers`), waits until `GET /workers` lists it, then checks every
  LAUNCHER_GATEWAY_RECHECK seconds that the gateway still does (a restarted gateway forgets
  its workers). While the gateway is unreachable it retries with a doubling delay (0.5 s up
  to LAUNCHER_GATEWAY_RETRY_MAX). Nothing the gateway does can delay serving: the task runs
  beside the supervisor and every request is bounded by LAUNCHER_GATEWAY_TIMEOUT.
- `before_stop()` before the server is taken down (stop, restart on request, liveness
  failure, give-up): it ends that task, asks the gateway to forget the worker
  (`DELETE /workers/{id}`) and waits until `GET /workers` no longer lists it, for at most
  LAUNCHER_GATEWAY_DRAIN_TIMEOUT seconds; only then does the server get SIGTERM, so the
  gateway stops routing to it before it drains.

Each change is reported through `note(dict)`, which supervise writes to status.json under
"gateway".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..timestamps import iso
from .gateway_api import GatewayApi, GatewayError, listed_id

RETRY_INITIAL = 0.5
"""First wait before registering again after the gateway failed to answer (seconds)."""
SETTLE = 1.0
"""How long a stop waits for a registration that was sent but not listed yet to show up."""


@dataclass(frozen=True)
class Timing:
    register_timeout: float
    drain_timeout: float
    retry_max: float
    recheck: float


class GatewayMembership:
    """Registration of one worker URL with one gateway, across all starts of the server."""

    def __init__(
        self,
        api: GatewayApi,
        worker_url: str,
        api_key: str | None,
        timing: Timing,
        log: Any,
        note: Callable[[dict[str, Any]], None],
    ) -> None:
        self.api = api
        self.worker_url = worker_url
        self.api_key = api_key
        self.timing = timing
        self.log = log
        self._note = note
        self.state = "waiting"
        self.worker_id: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._posted = False
        self._ready_at: float | None = None
        self._report("waiting", "registers once the server is ready")

    # --- what status.json shows -------------------------------------------------------------
    def _report(self, state: str, message: str) -> None:
        self.state = state
        self._note(
            {
                "state": state,
                "gateway_url": self.api.base_url,
                "worker_url": self.worker_url,
                "worker_id": self.worker_id,
                "since": iso(time.time()),
                "message": message,
            }
        )

    # --- the observer supervise calls ------------------------------------------------------
    def on_ready(self) -> None:
        """The server answers /health: register it in the background."""
        if self._task is not None and not self._task.done():
            return
        self._ready_at = time.monotonic()
        self._task = asyncio.ensure_future(self._keep_registered())
        self._task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """The registration task ended by an error it does not handle: say so in status.json
        and the log at once (not only in a traceback at exit). Type name only: the text of
        an unexpected error can hold a header, and so a token."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        what = (
            f"registration stopped: {type(exc).__name__} (a bug in the launcher; the server "
            "keeps serving, unregistered); restart the instance to try again"
        )
        self.log.error(f"gateway {what}", gateway=self.api.base_url)
        self._report("failed", what)

    async def before_stop(self, limit: float | None = None) -> None:
        """Deregister and wait until the gateway no longer lists the worker: at most
        LAUNCHER_GATEWAY_DRAIN_TIMEOUT, or ``limit`` (the share of the stop budget that the
        launcher gives it) when that is less."""
        timeout = (
            self.timing.drain_timeout if limit is None else min(limit, self.timing.drain_timeout)
        )
        await self._cancel()
        if not self._posted and self.worker_id is None:
            if self.state != "waiting":
                self._report("waiting", "not registered; registers once the server is ready")
            return
        self._report("deregistering", f"asking {self.api.base_url} to forget this worker")
        started = time.monotonic()
        try:
            gone = await asyncio.wait_for(self._deregister(), timeout)
        except asyncio.TimeoutError:
            gone = False
            why = f"not confirmed within {timeout:g} s"
        except GatewayError as exc:
            gone = False
            why = str(exc)
        took = round(time.monotonic() - started, 3)
        self._posted = False
        if gone:
            self.worker_id = None
            self.log.info("deregistered from the gateway", gateway=self.api.base_url, took_s=took)
            self._report("deregistered", "the gateway no longer lists this worker")
        else:
            what = (
                f"could not confirm that the gateway forgot this worker ({why}); stopping the "
                "server anyway (LAUNCHER_GATEWAY_DRAIN_TIMEOUT)"
            )
            self.log.warning(what, gateway=self.api.base_url)
            self._report("deregister_failed", what)

    async def close(self) -> None:
        """The launcher exits: end the background task (no request to the gateway)."""
        await self._cancel()

    # --- inside -------------------------------------------------------------------------------
    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_registered(self) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                await self._register_once()
            except GatewayError as exc:
                message = f"{exc}; trying again in {delay:g} s"
                self.log.warning(f"gateway registration failed: {message}")
                self._report("retrying", message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.timing.retry_max)
                continue
            delay = RETRY_INITIAL
            await asyncio.sleep(self.timing.recheck)

    async def _register_once(self) -> None:
        worker_id = listed_id(await self.api.workers(), self.worker_url)
        if worker_id is None:
            if self.state == "registered":
                self.log.warning(
                    "the gateway no longer lists this worker; registering again",
                    gateway=self.api.base_url,
                )
            self._posted = True
            await self.api.add(self.worker_url, self.api_key)
            self._report(
                "registering",
                f"sent {self.worker_url} to {self.api.base_url}; waiting for it to be listed",
            )
            worker_id = await self._wait_listed(self.timing.register_timeout)
            if worker_id is None:
                raise GatewayError(
                    f"the gateway did not list {self.worker_url} within "
                    f"{self.timing.register_timeout:g} s: it may not reach this server there "
                    "(LAUNCHER_WORKER_URL; its /health must answer without a token)"
                )
        if self.state != "registered" or worker_id != self.worker_id:
            self.worker_id = worker_id
            since_ready = (
                round(time.monotonic() - self._ready_at, 3) if self._ready_at is not None else None
            )
            self.log.info(
                "registered with the gateway",
                gateway=self.api.base_url,
                worker_url=self.worker_url,
                worker_id=worker_id,
                ready_to_listed_s=since_ready,
            )
            self._report("registered", f"listed by {self.api.base_url} as {self.worker_url}")

    async def _wait_listed(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            worker_id = listed_id(await self.api.workers(), self.worker_url)
            if worker_id is not None:
                return worker_id
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _deregister(self) -> bool:
        """DELETE every listing of the worker until none is left; True when gone."""
        settle_until = time.monotonic() + SETTLE if self.worker_id is None else 0.0
        deleted: set[str] = set()
        pause = 0.02
        while True:
            worker_id = listed_id(await self.api.workers(), self.worker_url)
            if worker_id is None:
                if time.monotonic() >= settle_until:
                    return True
            elif worker_id not in deleted:
                await self.api.remove(worker_id)
                deleted.add(worker_id)
                settle_until = 0.0
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
