"""One start of the server: check the port, spawn it, watch it (startup probes, then
liveness) until it fails, is stopped or is restarted on request, then take its tree down.

`Attempt.run` returns an Outcome when the server failed (the restart policy decides what
follows), a new LaunchPlan when a restart was requested (SIGHUP) and the fresh plan is good,
or None when the launcher is stopping. The server's tree is gone when it returns, and
`reason` says in one line why the attempt ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import psutil

from ..coldstart.phases import PhaseTracker
from ..plan.build import LaunchPlan
from ..redact import argv_redactor, mask_argv
from ..settings import Settings, deprecated_in_use
from ..timestamps import iso
from .control import Control
from .lifecycle import Lifecycle
from .probes import ProbeResult, health_url, probe, readiness_path
from .process import (
    Tree,
    describe_exit,
    pdeathsig_preexec,
    port_in_use,
    reap_strays,
)
from .restart_policy import Failure, Outcome
from .run_dir import RunDir, ServerRecord
from .server_output import OutputSink, ServerProtocol
from .states import ServerState
from .stop_budget import deregister_limit

Replan = Callable[[], Awaitable["LaunchPlan | None"]]


class ServerObserver(Protocol):
    """Told when the server became ready, and asked before its tree is taken down (a
    gateway membership: `scaleout.join.gateway_membership`). Both are bounded in time."""

    def on_ready(self) -> None: ...

    async def before_stop(self, limit: float) -> None:
        """Done within ``limit`` seconds (the launcher also cancels it then)."""
        ...


_NOT_HEAD = (
    "this node's schedulers are ready (multi-node rank > 0: SGLang answers /health here, "
    "the API is served by rank 0)"
)


def fmt_seconds(seconds: float) -> str:
    return f"{seconds:.3g}"


def server_env(plan: LaunchPlan) -> dict[str, str]:
    env = dict(plan.env)  # the plan exports SGLANG_MODEL, MODEL_NAME and HOME already
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines arrive as printed, not in 8 KiB blocks
    # An old name that gave the launcher its value is the launcher's, not SGLang's:
    # SGLANG_PORT is the first port of SGLang's internal sockets (0.5.6.post2 utils/common.py
    # and distributed/device_communicators/shm_broadcast.py; 0.5.23 environ.py), and the
    # server's own port taken by one of them fails every start ("address already in use").
    for old in deprecated_in_use(plan.env):
        env.pop(old, None)
    return env


class Attempt:
    def __init__(
        self,
        settings: Settings,
        control: Control,
        lifecycle: Lifecycle,
        sink: OutputSink,
        client: httpx.AsyncClient,
        run_dir: RunDir,
        replan: Replan,
        log: Any,
        observer: ServerObserver | None = None,
        progress: PhaseTracker | None = None,
    ) -> None:
        self.settings = settings
        self.control = control
        self.lifecycle = lifecycle
        self.sink = sink
        self.client = client
        self.run_dir = run_dir
        self.replan = replan
        self.log = log
        self.observer = observer
        self.progress = progress
        """Load phases and the stall watchdog (coldstart), fed with the server's lines."""
        self.me = psutil.Process()
        self.reason = ""

    def _cannot_start(self, problem: str, failure: Failure) -> Outcome:
        self.reason = problem
        self.log.error(problem if failure is not Failure.PORT_BUSY else f"not starting: {problem}")
        return Outcome(failure)  # the launcher's words, not the server's: not in the tail

    async def run(self, plan: LaunchPlan, restarts: int) -> Outcome | LaunchPlan | None:
        self.control.ready_line = False
        url = health_url(plan.host, plan.port, "")
        self.lifecycle.to(
            ServerState.STARTING,
            server_pid=None,
            argv=plan.argv,
            model=plan.model,
            url=url,
            ready_at=None,
            next_start_at=None,
            restarts=restarts,
            message="checking the port",
        )
        self.sink.tail.clear()
        self.sink.redact = argv_redactor(self.settings, plan.argv)
        busy = port_in_use(plan.host, plan.port)
        if busy:
            return self._cannot_start(busy, Failure.PORT_BUSY)
        if not plan.argv:
            return self._cannot_start(
                "the server command is empty (SGLANG_COMMAND)", Failure.NOT_EXECUTABLE
            )
        try:
            plan.cwd.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return self._cannot_start(
                f"the working directory {plan.cwd} cannot be created: "
                f"{exc.strerror or exc} (WORKSPACE)",
                Failure.NOT_EXECUTABLE,
            )
        loop = asyncio.get_running_loop()
        control, sink = self.control, self.sink
        on_lines = self.progress.feed if self.progress is not None else None
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: ServerProtocol(sink, control.on_ready_line, control.on_exit, on_lines),
                *plan.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=server_env(plan),
                cwd=str(plan.cwd),
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        except OSError as exc:
            return self._cannot_start(
                f"cannot execute {plan.argv[0]!r}: {exc.strerror or exc} (SGLANG_COMMAND)",
                Failure.NOT_EXECUTABLE,
            )
        started = loop.time()
        pid = transport.get_pid()
        if self.progress is not None:
            self.progress.new_start()
        leader: psutil.Process | None
        try:
            leader = psutil.Process(pid)
            self.run_dir.record_server(
                ServerRecord(pid, pid, leader.create_time(), self.me.pid, plan.argv)
            )
        except psutil.Error:
            leader = None
        except OSError as exc:
            self.log.warning(f"cannot record the server in {self.run_dir.path}: {exc}")
        self.log.info("server started", pid=pid, command=shlex.join(mask_argv(plan.argv)))
        for warning in plan.warnings:  # the container log is all most users ever see
            self.log.warning(f"plan: {warning}")
        self.lifecycle.note(server_pid=pid, message=f"loading: waiting for {url}/health")
        result: Outcome | LaunchPlan | None = None
        try:
            result = await self._watch(proto, plan, started)
        finally:
            stop_began = loop.time()
            try:
                await self._leave_gateway()
            finally:
                spent = loop.time() - stop_began
                await self._take_down(proto, pid, leader, self.settings.stop_timeout - spent)
            transport.close()
            self.run_dir.forget_server()
        rc = proto.returncode
        last_exit = describe_exit(rc)
        self.log.info(f"server {last_exit}", pid=pid)
        if isinstance(result, Outcome):
            self.lifecycle.note(
                server_pid=None,
                last_exit=last_exit,
                last_reason=self.reason,
                last_error=sink.last_lines(),
            )
            if result.failure is Failure.EXITED:
                result = Outcome(Failure.EXITED, result.was_ready, result.ready_for, returncode=rc)
        else:
            self.lifecycle.note(server_pid=None, last_exit=last_exit)
        return result

    def _interrupted(self, proto: ServerProtocol) -> bool:
        return bool(self.control.stop_signal or self.control.reload_requested or proto.exited)

    async def _probe(self, url: str, timeout: float, proto: ServerProtocol) -> ProbeResult | None:
        """One probe; None when interrupted by a signal or the server's exit.

        When the server prints its ready line while the probe is in flight (a `/health` sent
        during loading may hang for the whole timeout), that probe is dropped and a fresh one
        sent at once.
        """
        control = self.control
        wakeup = control.wakeup
        sent_after_ready_line = control.ready_line
        task = asyncio.ensure_future(probe(self.client, url, timeout))
        try:
            while True:
                if task.done():
                    return task.result()
                if self._interrupted(proto):
                    return None
                if control.ready_line and not sent_after_ready_line:
                    sent_after_ready_line = True
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    task = asyncio.ensure_future(probe(self.client, url, timeout))
                    continue
                waiter = asyncio.ensure_future(wakeup.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not task.done():
                    wakeup.clear()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _watch(
        self, proto: ServerProtocol, plan: LaunchPlan, started: float
    ) -> Outcome | LaunchPlan | None:
        s, control = self.settings, self.control
        loop = asyncio.get_running_loop()
        live_url = health_url(plan.host, plan.port)
        ready_url = health_url(
            plan.host, plan.port, readiness_path(plan.option_table_version, plan.serves_api)
        )
        url = ready_url
        deadline = started + s.startup_timeout
        ready_since: float | None = None
        last_probe: ProbeResult | None = None
        failures = 0
        while True:
            control.wakeup.clear()
            if control.stop_signal:
                return None
            if control.reload_requested:
                new_plan = await self.replan()
                if new_plan is not None:
                    self.reason = "restarted on request (SIGHUP)"
                    return new_plan
                continue
            if proto.exited:
                rc = proto.returncode
                was_ready = ready_since is not None
                ended = describe_exit(rc)
                self.reason = f"the server {'was ' if rc is not None and rc < 0 else ''}{ended}" + (
                    " after it was ready" if was_ready else " before it was ready"
                )
                (self.log.warning if was_ready else self.log.error)(self.reason)
                return Outcome(
                    Failure.EXITED,
                    was_ready=was_ready,
                    ready_for=loop.time() - ready_since if ready_since is not None else 0.0,
                    returncode=rc,
                )
            if ready_since is None:
                if loop.time() >= deadline:
                    self.reason = (
                        f"the server was not ready within {fmt_seconds(s.startup_timeout)} s "
                        "(LAUNCHER_STARTUP_TIMEOUT); "
                        + (
                            f"the last probe of {url} got {last_probe.describe()}"
                            if last_probe is not None
                            else f"no probe of {url} was answered"
                        )
                    )
                    self.log.error(self.reason)
                    return Outcome(Failure.STARTUP_TIMEOUT)
                stalled = self._stalled()
                if stalled is not None:
                    return stalled
                result = await self._probe(url, s.liveness_timeout, proto)
                if result is None:
                    continue
                last_probe = result
                if result.status == 404 and url != live_url:
                    # no /ready in this release after all (the table is a guess when the
                    # installed version is unknown): readiness on /health, as before 0.5.20
                    self.log.info(f"{url} is not served: probing {live_url} for readiness")
                    url = live_url
                    continue
                if result.ok:
                    if self.progress is not None:
                        self.progress.enter("ready")
                    ready_since = loop.time()
                    self.log.info(
                        "server ready", url=url, startup_s=round(ready_since - started, 3)
                    )
                    url = live_url  # liveness from now on: /health
                    serving = f"serving on {url}" if plan.serves_api else _NOT_HEAD
                    self.lifecycle.to(ServerState.READY, ready_at=iso(time.time()), message=serving)
                    if self.observer is not None and plan.serves_api:
                        self.observer.on_ready()
                    continue
                if control.ready_line:
                    control.ready_line = False
                    continue
                await control.pause(s.startup_period)
                continue
            if not await control.pause(s.liveness_period):
                continue
            result = await self._probe(url, s.liveness_timeout, proto)
            if result is None:
                continue
            reap_strays(keep=[proto.transport.get_pid()] if proto.transport else [])
            self.lifecycle.restore()  # a deleted status.json fails the HEALTHCHECK
            if result.ok:
                if failures:
                    self.log.info("server healthy again", url=url)
                    self.lifecycle.to(ServerState.READY, message=f"serving on {url}")
                failures = 0
                continue
            failures += 1
            what = f"liveness probe {failures}/{s.liveness_failures} failed: {result.describe()}"
            self.log.warning(what, url=url)
            self.lifecycle.to(ServerState.UNHEALTHY, message=what)
            if failures >= s.liveness_failures:
                self.reason = (
                    f"the server failed {failures} liveness probes in a row "
                    f"({result.describe()}): restarting it"
                )
                self.log.error(self.reason)
                return Outcome(
                    Failure.UNHEALTHY, was_ready=True, ready_for=loop.time() - ready_since
                )

    def _stalled(self) -> Outcome | None:
        """The stall watchdog: warn once per stall; with LAUNCHER_STALL_ACTION=restart the
        start counts as failed (an Outcome), else None."""
        line = self.progress.stalled() if self.progress is not None else None
        if line is None:
            return None
        self.log.warning(line)
        self.lifecycle.note(message=line)
        if self.settings.stall_action != "restart":
            return None
        self.reason = f"{line}: restarting it (LAUNCHER_STALL_ACTION=restart)"
        self.log.error(self.reason)
        return Outcome(Failure.STARTUP_TIMEOUT)

    async def _leave_gateway(self) -> None:
        """Deregister (worker mode) before SIGTERM, within its share of the stop budget
        (`stop_budget.deregister_limit`): a gateway that hangs, or that keeps listing the
        worker, delays the server's drain by that share and no more."""
        if self.observer is None:
            return
        s = self.settings
        limit = deregister_limit(s.stop_timeout, s.gateway_drain_timeout)
        try:
            # The observer keeps to ``limit`` itself; this bounds it should it not.
            await asyncio.wait_for(self.observer.before_stop(limit), limit + 0.25)
        except asyncio.TimeoutError:
            self.log.warning(
                f"leaving the gateway took more than {fmt_seconds(limit)} s: stopping the "
                "server anyway (LAUNCHER_GATEWAY_DRAIN_TIMEOUT, LAUNCHER_STOP_TIMEOUT)"
            )

    async def _take_down(
        self, proto: ServerProtocol, pid: int, leader: psutil.Process | None, budget: float
    ) -> None:
        """Stop the server's whole tree (no-op when it is already gone); wait for the pipe.

        SIGTERM goes to SGLang's main process only (`Tree`), which drains for up to
        ``budget`` seconds (what is left of LAUNCHER_STOP_TIMEOUT); then SIGKILL to the
        whole tree."""
        hurry = self.control.hurry
        stop_timeout = max(0.0, budget)
        roots = [leader, self.me] if leader is not None else [self.me]
        tree = Tree(pid, roots, keep_pids=[pid], leader=leader)
        if not proto.exited:
            self.lifecycle.to(
                ServerState.STOPPING,
                message=f"stopping the server (SIGTERM to its main process, which drains; "
                f"SIGKILL to all of it after {fmt_seconds(stop_timeout)} s)",
            )
            self.log.info("stopping the server", pid=pid, timeout_s=stop_timeout)

        def on_kill(remaining: list[psutil.Process]) -> None:
            why = (
                "on request"
                if hurry.is_set()
                else f"still draining after {fmt_seconds(stop_timeout)} s (LAUNCHER_STOP_TIMEOUT)"
            )
            self.log.warning(
                f"killing the server's processes {why}", pids=sorted(p.pid for p in remaining)
            )

        await tree.terminate(stop_timeout, hurry=hurry, on_kill=on_kill)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proto.closed), 5.0)
