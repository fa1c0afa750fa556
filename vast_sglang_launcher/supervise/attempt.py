"""One start of the server, in three steps that the restart loop calls in turn: `start`
(check the port, spawn it), `watch` (its events, one at a time, each to one handler, until it
fails, a stop or a restart is asked for) and `finish` (leave the gateway, take its tree
down). Each step ends with an `AttemptResult`; `finish`'s is the attempt's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
import psutil

from ..coldstart.phases import PhaseTracker
from ..plan.build import LaunchPlan
from ..redact import argv_redactor, mask_argv
from ..settings import Settings, deprecated_in_use
from ..timestamps import iso
from .control import SERVER_KINDS, Control, Event, Kind
from .lifecycle import Lifecycle
from .probes import ProbeResult, health_url, probe
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
from .watch import (
    Health,
    Liveness,
    ProbeSchedule,
    ProbeUrls,
    StartupDeadline,
    fmt_seconds,
)


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


class End(enum.Enum):
    FAILED = "failed"
    """The server failed (``outcome``): the restart policy decides what follows."""
    STOPPED = "stopped"
    """The launcher was asked to stop."""
    RELOAD = "reload"
    """A restart with a fresh plan was asked for (SIGHUP); the server still runs."""
    RESTART = "restart"
    """Restarted on request with the good fresh plan ``plan``."""


@dataclass(frozen=True)
class AttemptResult:
    """How a step of an attempt ended, and why in one line (``reason``)."""

    end: End
    reason: str = ""
    outcome: Outcome | None = None
    plan: LaunchPlan | None = None


@dataclass
class Running:
    """The server of this attempt while it runs, and what is known of it."""

    plan: LaunchPlan
    pid: int
    leader: psutil.Process | None
    transport: asyncio.SubprocessTransport
    proto: ServerProtocol
    started: float
    urls: ProbeUrls
    deadline: StartupDeadline
    schedule: ProbeSchedule
    liveness: Liveness
    ready_since: float | None = None
    last_probe: ProbeResult | None = None
    probe_task: asyncio.Future[None] | None = None


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
        self.log = log
        self.observer = observer
        self.progress = progress
        """Load phases and the stall watchdog (coldstart), fed with the server's lines."""
        self.me = psutil.Process()
        self.server: Running | None = None
        """The server of the attempt under way, from `start` to `finish`."""
        self._handlers: dict[Kind, Callable[[Running, Event], AttemptResult | None]] = {
            Kind.STOP: self._on_stop,
            Kind.RELOAD: self._on_reload,
            Kind.EXITED: self._on_exit,
            Kind.READY_LINE: self._on_ready_line,
            Kind.PROBE: self._on_probe,
        }

    # --- start --------------------------------------------------------------------------

    def _cannot_start(self, problem: str, failure: Failure) -> AttemptResult:
        self.log.error(problem if failure is not Failure.PORT_BUSY else f"not starting: {problem}")
        # the launcher's words, not the server's: not in the tail
        return AttemptResult(End.FAILED, problem, Outcome(failure))

    async def start(self, plan: LaunchPlan, restarts: int) -> AttemptResult | None:
        """Spawn the server; None when it runs (`watch` it next), else why it could not."""
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
        control.discard(SERVER_KINDS)  # an earlier server's last events
        on_lines = self.progress.feed if self.progress is not None else None
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: ServerProtocol(
                    sink,
                    lambda: control.post(Kind.READY_LINE),
                    lambda: control.post(Kind.EXITED),
                    on_lines,
                ),
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
        self.server = Running(
            plan,
            pid,
            leader,
            transport,
            proto,
            started,
            ProbeUrls(plan.host, plan.port, plan.option_table_version, plan.serves_api),
            StartupDeadline.after(started, self.settings.startup_timeout),
            ProbeSchedule(started),
            Liveness(self.settings.liveness_failures),
        )
        self.log.info("server started", pid=pid, command=shlex.join(mask_argv(plan.argv)))
        for warning in plan.warnings:  # the container log is all most users ever see
            self.log.warning(f"plan: {warning}")
        self.lifecycle.note(server_pid=pid, message=f"loading: waiting for {url}/health")
        return None

    # --- watch --------------------------------------------------------------------------

    async def watch(self) -> AttemptResult:
        """Take the events one at a time, each to its handler, until one ends the watch
        (a failure, a stop, a restart request). The server keeps running: `finish` next, or
        `watch` again (a restart request whose fresh plan was refused)."""
        server = self.server
        assert server is not None, "watch before start"
        loop = asyncio.get_running_loop()
        try:
            while True:
                event = await self.control.next(self._time_left(server, loop.time()))
                if event is None:
                    result = self._on_time(server, loop.time())
                else:
                    result = self._handlers[event.kind](server, event)
                if result is not None:
                    return result
        finally:
            self._drop_probe(server)

    def _time_left(self, server: Running, now: float) -> float | None:
        """Seconds until the next thing due: a probe, or the startup deadline."""
        due = [] if server.schedule.due is None else [server.schedule.due]
        if server.ready_since is None:
            due.append(server.deadline.at)
        return max(0.0, min(due) - now) if due else None

    def _on_time(self, server: Running, now: float) -> AttemptResult | None:
        if server.ready_since is None:
            if server.deadline.passed(now):
                reason = server.deadline.reason(server.urls.current, server.last_probe)
                self.log.error(reason)
                return AttemptResult(End.FAILED, reason, Outcome(Failure.STARTUP_TIMEOUT))
            due = server.schedule.due
            if due is None or now < due:
                return None
            stalled = self._stalled()
            if stalled is not None:
                return stalled
        elif server.schedule.due is None or now < server.schedule.due:
            return None
        self._send_probe(server)
        return None

    def _on_stop(self, server: Running, event: Event) -> AttemptResult:
        return AttemptResult(End.STOPPED, f"stopped ({event.detail})")

    def _on_reload(self, server: Running, event: Event) -> AttemptResult:
        return AttemptResult(End.RELOAD, "restarted on request (SIGHUP)")

    def _on_exit(self, server: Running, event: Event) -> AttemptResult:
        rc = server.proto.returncode
        was_ready = server.ready_since is not None
        ended = describe_exit(rc)
        reason = f"the server {'was ' if rc is not None and rc < 0 else ''}{ended}" + (
            " after it was ready" if was_ready else " before it was ready"
        )
        (self.log.warning if was_ready else self.log.error)(reason)
        now = asyncio.get_running_loop().time()
        ready_for = now - server.ready_since if server.ready_since is not None else 0.0
        return AttemptResult(
            End.FAILED, reason, Outcome(Failure.EXITED, was_ready, ready_for, returncode=rc)
        )

    def _on_ready_line(self, server: Running, event: Event) -> None:
        if server.ready_since is not None:
            return
        now = asyncio.get_running_loop().time()
        if server.schedule.on_ready_line(now):
            self._drop_probe(server)

    def _on_probe(self, server: Running, event: Event) -> AttemptResult | None:
        number, result = event.detail
        now = asyncio.get_running_loop().time()
        s = self.settings
        period = s.startup_period if server.ready_since is None else s.liveness_period
        if not server.schedule.answered(number, now + period):
            return None  # the answer to a probe dropped meanwhile
        server.probe_task = None
        if server.ready_since is None:
            return self._on_readiness(server, result, now)
        return self._on_liveness(server, result, now)

    def _on_readiness(
        self, server: Running, result: ProbeResult, now: float
    ) -> AttemptResult | None:
        url = server.urls.current
        if server.urls.not_served(result):
            # /ready's 404 says nothing about readiness: the give-up line names the last
            # answer of the URL readiness is probed on now (/health), or none
            self.log.info(f"{url} is not served: probing {server.urls.current} for readiness")
            server.schedule.due = now
            return None
        server.last_probe = result
        if result.ok:
            self._became_ready(server, url, now)
        return None

    def _became_ready(self, server: Running, url: str, now: float) -> None:
        if self.progress is not None:
            self.progress.enter("ready")
        server.ready_since = now
        self.log.info("server ready", url=url, startup_s=round(now - server.started, 3))
        server.urls.to_liveness()  # liveness from now on: /health
        server.schedule.due = now + self.settings.liveness_period
        plan = server.plan
        serving = f"serving on {server.urls.live}" if plan.serves_api else _NOT_HEAD
        self.lifecycle.to(ServerState.READY, ready_at=iso(time.time()), message=serving)
        if self.observer is not None and plan.serves_api:
            self.observer.on_ready()  # the gateway hook: register

    def _on_liveness(
        self, server: Running, result: ProbeResult, now: float
    ) -> AttemptResult | None:
        self._housekeeping(server)
        url = server.urls.live
        health = server.liveness.record(result)
        if health is Health.HEALTHY:
            return None
        if health is Health.RECOVERED:
            self.log.info("server healthy again", url=url)
            self.lifecycle.to(ServerState.READY, message=f"serving on {url}")
            return None
        live = server.liveness
        what = f"liveness probe {live.failures}/{live.allowed} failed: {result.describe()}"
        self.log.warning(what, url=url)
        self.lifecycle.to(ServerState.UNHEALTHY, message=what)
        if health is Health.FAILING:
            return None
        reason = (
            f"the server failed {live.failures} liveness probes in a row "
            f"({result.describe()}): restarting it"
        )
        self.log.error(reason)
        assert server.ready_since is not None
        outcome = Outcome(Failure.UNHEALTHY, was_ready=True, ready_for=now - server.ready_since)
        return AttemptResult(End.FAILED, reason, outcome)

    def _housekeeping(self, server: Running) -> None:
        """With each liveness answer: reap the orphans re-parented to the launcher (a
        subreaper), and rewrite a deleted status.json (the HEALTHCHECK reads it)."""
        reap_strays(keep=[server.pid])
        self.lifecycle.restore()

    def _send_probe(self, server: Running) -> None:
        number = server.schedule.sent()
        url = server.urls.current
        control, client, timeout = self.control, self.client, self.settings.liveness_timeout

        async def run() -> None:
            result = await probe(client, url, timeout)
            control.post(Kind.PROBE, (number, result))

        server.probe_task = asyncio.ensure_future(run())

    def _drop_probe(self, server: Running) -> None:
        task, server.probe_task = server.probe_task, None
        if task is not None and not task.done():
            task.cancel()
        server.schedule.dropped(asyncio.get_running_loop().time())

    def _stalled(self) -> AttemptResult | None:
        """The stall watchdog: warn once per stall; with LAUNCHER_STALL_ACTION=restart the
        start counts as failed, else None."""
        line = self.progress.stalled() if self.progress is not None else None
        if line is None:
            return None
        self.log.warning(line)
        self.lifecycle.note(message=line)
        if self.settings.stall_action != "restart":
            return None
        reason = f"{line}: restarting it (LAUNCHER_STALL_ACTION=restart)"
        self.log.error(reason)
        return AttemptResult(End.FAILED, reason, Outcome(Failure.STARTUP_TIMEOUT))

    # --- finish -------------------------------------------------------------------------

    async def finish(self, result: AttemptResult | None) -> AttemptResult | None:
        """Leave the gateway, take the server's tree down (no-op when it is gone) and
        record how it ended; ``result`` (how the watch ended; None after a launcher bug)
        comes back with the exit status of a server that exited itself."""
        server = self.server
        if server is None:
            return result
        loop = asyncio.get_running_loop()
        stop_began = loop.time()
        try:
            try:
                await self._leave_gateway()
            finally:
                spent = loop.time() - stop_began
                budget = self.settings.stop_timeout - spent
                await self._take_down(server.proto, server.pid, server.leader, budget)
            server.transport.close()
            self.run_dir.forget_server()
        finally:
            self.server = None
        rc = server.proto.returncode
        last_exit = describe_exit(rc)
        self.log.info(f"server {last_exit}", pid=server.pid)
        if result is None or result.outcome is None:
            self.lifecycle.note(server_pid=None, last_exit=last_exit)
            return result
        self.lifecycle.note(
            server_pid=None,
            last_exit=last_exit,
            last_reason=result.reason,
            last_error=self.sink.last_lines(),
        )
        if result.outcome.failure is Failure.EXITED:
            result = replace(result, outcome=replace(result.outcome, returncode=rc))
        return result

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
