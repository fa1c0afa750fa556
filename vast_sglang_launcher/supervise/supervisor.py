"""``run``: start the planned server and keep it serving; ``restart``: ask ``run`` to restart it.

One asyncio loop does everything: it spawns the server in a session of its own (PDEATHSIG
SIGKILL, so it dies with the launcher), passes its output through, probes ``/health``
(startup phase, then liveness), restarts it per :mod:`restart_policy`, stops its whole tree on
SIGTERM/SIGINT, restarts it with a fresh plan on SIGHUP, and keeps ``status.json`` current.

Exit status: 0 after a requested stop (or when no model is set), 78 (EX_CONFIG) when it gives
up: supervisord is configured to treat 78 as final.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import psutil

from .. import markers
from ..errors import EX_CONFIG, ConfigError, LauncherError
from ..logs import get_logger
from ..plan.build import LaunchPlan
from ..plan.prepare import prepare_plan
from ..redact import mask_argv
from ..settings import Settings
from .failure_hints import hint_for
from .probes import ProbeResult, health_url, make_client, probe
from .process import (
    ServerRecord,
    Tree,
    describe_exit,
    group_members,
    pdeathsig_preexec,
    port_in_use,
    reap_strays,
    same_process,
    set_child_subreaper,
)
from .provisioning_gate import wait_until_gone
from .restart_policy import Failure, Outcome, RestartPolicy, Verdict
from .server_output import OutputSink, ServerProtocol
from .status import StatusFile, iso

LAUNCHER_PID_FILE = "launcher.pid"
SERVER_RECORD_FILE = "server.json"
SERVER_LOG_FILE = "sglang.log"


def _fmt(seconds: float) -> str:
    return f"{seconds:.3g}"


class Supervisor:
    """The ``run`` command's state; one instance per launcher process."""

    def __init__(self, settings: Settings, stdout: BinaryIO | None) -> None:
        self.settings = settings
        self.stdout = stdout
        self.log = get_logger("vast_sglang_launcher.supervise")
        self.me = psutil.Process()
        self.run_dir = settings.run_dir
        self.status = StatusFile(
            settings.status_file,
            launcher_pid=self.me.pid,
            launcher_started=self.me.create_time(),
        )
        self.policy = RestartPolicy(
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            backoff_reset=settings.backoff_reset,
            start_retries=settings.start_retries,
        )
        self.sink: OutputSink | None = None
        self.client: httpx.AsyncClient | None = None
        self.stop_signal: str | None = None
        self.reload_requested = False
        self.next_plan: LaunchPlan | None = None
        self.ready_line_pending = False
        self.restarts = 0
        self.last_reason = ""
        self.status_warned = False
        self.pid_fd: int | None = None
        # Created inside the loop (Python 3.10 binds events to the loop at creation).
        self.wakeup: asyncio.Event
        self.stop_event: asyncio.Event
        self.hurry: asyncio.Event

    # --- signals --------------------------------------------------------------------------

    def _on_stop(self, sig: signal.Signals) -> None:
        if self.stop_signal is None:
            self.stop_signal = sig.name
            self.log.info(f"received {sig.name}: stopping")
            self.stop_event.set()
            self.wakeup.set()
        elif not self.hurry.is_set():
            self.log.warning(f"received {sig.name} again: killing the server now")
            self.hurry.set()

    def _on_hup(self) -> None:
        if self.stop_signal is not None:
            return
        self.log.info("received SIGHUP: restarting the server with a fresh plan")
        self.reload_requested = True
        self.wakeup.set()

    def _on_ready_line(self) -> None:
        self.ready_line_pending = True
        self.wakeup.set()

    def _on_exit(self) -> None:
        self.wakeup.set()

    # --- status -----------------------------------------------------------------------------

    def _status(self, **changes: Any) -> None:
        self.status.update(**changes)
        if self.status.error and not self.status_warned:
            self.status_warned = True
            self.log.warning(self.status.error)

    # --- entry ------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.wakeup = asyncio.Event()
        self.stop_event = asyncio.Event()
        self.hurry = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)
        set_child_subreaper()
        self._claim_run_dir()
        log_path = self.settings.log_dir / SERVER_LOG_FILE
        self.sink = OutputSink(self.stdout, log_path, self.settings.tail_lines)
        if self.sink.log_error:
            self.log.warning(
                f"server output goes to stdout only, not to the log file: {self.sink.log_error}"
                " (LAUNCHER_LOG_DIR)"
            )
        self.client = make_client()
        try:
            return await self._main()
        finally:
            await self.client.aclose()
            self.sink.close()
            self._release_run_dir()

    def _claim_run_dir(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"LAUNCHER_RUN_DIR={self.run_dir} cannot be created: {exc.strerror or exc}; "
                "fix or set LAUNCHER_RUN_DIR"
            ) from None
        # launcher.pid holds our pid and an exclusive flock for our whole life: the kernel
        # drops the lock when we die, however we die, so a stale file never blocks a start.
        pid_file = self.run_dir / LAUNCHER_PID_FILE
        try:
            fd = os.open(pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"LAUNCHER_RUN_DIR={self.run_dir} is not writable: {exc.strerror or exc}; "
                "fix or set LAUNCHER_RUN_DIR"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            other = _read_pid(pid_file)
            raise ConfigError(
                f"another launcher is already running (pid {other}, LAUNCHER_RUN_DIR="
                f"{self.run_dir}); stop it first, or use `restart`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.me.pid}\n".encode())
        self.pid_fd = fd

    def _release_run_dir(self) -> None:
        if self.pid_fd is not None:
            with contextlib.suppress(OSError):
                (self.run_dir / LAUNCHER_PID_FILE).unlink()
            os.close(self.pid_fd)
            self.pid_fd = None

    async def _main(self) -> int:
        await self._stop_leftover()
        if self.stop_signal:
            return self._stopped()
        marker = self.settings.marker(markers.PROVISIONING)
        if os.path.lexists(marker):
            self._status(
                state="waiting_provisioning",
                message=f"waiting for provisioning to finish ({marker} exists)",
            )
            self.log.info("waiting for provisioning to finish", marker=str(marker))
            marker_dir = self.settings.marker_dir
            released = await wait_until_gone(
                marker,
                self.stop_event,
                heartbeat=lambda waited: self.log.info(
                    "still waiting for provisioning", marker=str(marker), waited_s=int(waited)
                ),
                abandoned=lambda: markers.provisioning_abandoned(marker_dir),
            )
            if not released:
                return self._stopped()
            if markers.provisioning_abandoned(marker_dir):
                # Its owner was killed mid-run: waiting longer would wait forever.
                self.log.warning(
                    "provisioning died without finishing; starting the server anyway",
                    marker=str(marker),
                )
                markers.remove(marker)
            else:
                self.log.info("provisioning finished")
        self.reload_requested = False  # a SIGHUP before the first plan changes nothing
        plan = await self._first_plan()
        if self.stop_signal:
            return self._stopped()
        if plan.model is None:
            self.log.info("not starting: SGLANG_MODEL is not set")
            self._status(state="stopped", message="not starting: SGLANG_MODEL is not set")
            return 0
        while True:
            outcome = await self._attempt(plan)
            if self.stop_signal:
                return self._stopped()
            if outcome is None:  # SIGHUP with a good new plan
                assert self.next_plan is not None
                plan, self.next_plan = self.next_plan, None
                self.policy.reset()
                self.restarts += 1
                continue
            verdict = self.policy.decide(outcome)
            if verdict.give_up:
                return self._give_up(verdict, outcome)
            if not await self._backoff(verdict.delay, self._hint(outcome)):
                return self._stopped()
            if self.next_plan is not None:
                plan, self.next_plan = self.next_plan, None
                self.policy.reset()
            self.restarts += 1

    async def _first_plan(self) -> LaunchPlan:
        try:
            return await asyncio.to_thread(prepare_plan, self.settings)
        except LauncherError as exc:
            self._status(state="failed", message=str(exc), last_reason=str(exc))
            raise

    async def _replan(self) -> LaunchPlan | None:
        """A fresh plan for SIGHUP; None (server left as it is) when the plan fails."""
        self.reload_requested = False
        try:
            plan = await asyncio.to_thread(prepare_plan, self.settings)
        except LauncherError as exc:
            self.log.error(f"restart refused, the server keeps its current arguments: {exc}")
            return None
        if plan.model is None:
            self.log.error("restart refused: the new plan has no model (SGLANG_MODEL)")
            return None
        return plan

    def _stopped(self) -> int:
        self._status(state="stopped", server_pid=None, message=f"stopped ({self.stop_signal})")
        self.log.info("stopped")
        return 0

    # --- leftovers --------------------------------------------------------------------------

    async def _stop_leftover(self) -> None:
        """Stop a server that an earlier launcher recorded and left running."""
        path = self.run_dir / SERVER_RECORD_FILE
        record = ServerRecord.load(path)
        if record is None:
            with contextlib.suppress(OSError):
                path.unlink()
            return
        leader = same_process(record.pid, record.create_time)
        members = group_members(record.pgid)
        if leader is None and psutil.pid_exists(record.pgid):
            # The group id now names another process's group: not ours to touch.
            members = []
        if leader is not None or members:
            pids = sorted({p.pid for p in members} | ({leader.pid} if leader else set()))
            self.log.warning("stopping a server left over by an earlier launcher", pids=pids)
            self._status(
                state="stopping", message="stopping a server left over by an earlier launcher"
            )
            tree = Tree(record.pgid, [leader] if leader else [])
            await tree.terminate(self.settings.stop_timeout, hurry=self.hurry)
        with contextlib.suppress(OSError):
            path.unlink()

    # --- one start of the server ----------------------------------------------------------

    def _server_env(self, plan: LaunchPlan) -> dict[str, str]:
        env = dict(plan.env)  # the plan exports SGLANG_MODEL, MODEL_NAME and HOME already
        env.setdefault("PYTHONUNBUFFERED", "1")  # lines arrive as printed, not in 8 KiB blocks
        return env

    async def _attempt(self, plan: LaunchPlan) -> Outcome | None:
        """Start the server once and watch it until it fails (an Outcome) or is stopped or
        restarted on request (None). The server's tree is gone when this returns."""
        assert self.sink is not None
        self.ready_line_pending = False
        url = health_url(plan.host, plan.port, "")
        self._status(
            state="starting",
            server_pid=None,
            argv=plan.argv,
            model=plan.model,
            url=url,
            ready_at=None,
            next_start_at=None,
            restarts=self.restarts,
            message="checking the port",
        )
        busy = port_in_use(plan.host, plan.port)
        if busy:
            self.last_reason = busy
            self.log.error(f"not starting: {busy}")
            self.sink.tail.clear()
            self.sink.tail.append(busy)
            return Outcome(Failure.PORT_BUSY)
        self.sink.tail.clear()
        problem = None
        if not plan.argv:
            problem = "the server command is empty (SGLANG_COMMAND)"
        else:
            try:
                plan.cwd.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problem = f"the working directory {plan.cwd} cannot be created: " + (
                    f"{exc.strerror or exc} (WORKSPACE)"
                )
        if problem is not None:
            self.last_reason = problem
            self.log.error(problem)
            self.sink.tail.append(problem)
            return Outcome(Failure.NOT_EXECUTABLE)
        loop = asyncio.get_running_loop()
        sink = self.sink
        try:
            transport, proto = await loop.subprocess_exec(
                lambda: ServerProtocol(sink, self._on_ready_line, self._on_exit),
                *plan.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._server_env(plan),
                cwd=str(plan.cwd),
                start_new_session=True,
                preexec_fn=pdeathsig_preexec(),
            )
        except OSError as exc:
            self.last_reason = (
                f"cannot execute {plan.argv[0]!r}: {exc.strerror or exc} (SGLANG_COMMAND)"
            )
            self.log.error(self.last_reason)
            sink.tail.append(self.last_reason)
            return Outcome(Failure.NOT_EXECUTABLE)
        started = loop.time()
        pid = transport.get_pid()
        leader: psutil.Process | None
        try:
            leader = psutil.Process(pid)
            ServerRecord(pid, pid, leader.create_time(), self.me.pid, plan.argv).save(
                self.run_dir / SERVER_RECORD_FILE
            )
        except psutil.Error:
            leader = None
        except OSError as exc:
            self.log.warning(f"cannot record the server in {self.run_dir}: {exc}")
        self.log.info("server started", pid=pid, command=shlex.join(mask_argv(plan.argv)))
        self._status(server_pid=pid, message=f"loading: waiting for {url}/health")
        outcome: Outcome | None = None
        try:
            outcome = await self._watch(proto, plan, started)
        finally:
            await self._take_down(proto, pid, leader)
            transport.close()
            with contextlib.suppress(OSError):
                (self.run_dir / SERVER_RECORD_FILE).unlink()
        rc = proto.returncode
        last_exit = describe_exit(rc)
        self.log.info(f"server {last_exit}", pid=pid)
        if outcome is not None:
            self._status(
                server_pid=None,
                last_exit=last_exit,
                last_reason=self.last_reason,
                last_error=sink.last_lines(),
            )
            if outcome.failure is Failure.EXITED:
                outcome = Outcome(
                    Failure.EXITED, outcome.was_ready, outcome.ready_for, returncode=rc
                )
        else:
            self._status(server_pid=None, last_exit=last_exit)
        return outcome

    def _interrupted(self, proto: ServerProtocol) -> bool:
        return bool(self.stop_signal or self.reload_requested or proto.exited)

    async def _pause(self, seconds: float) -> bool:
        """Sleep; False when woken early (a signal, the server's exit, its ready line)."""
        if self.wakeup.is_set():
            return False
        try:
            await asyncio.wait_for(self.wakeup.wait(), seconds)
        except asyncio.TimeoutError:
            return True
        return False

    async def _probe(self, url: str, timeout: float, proto: ServerProtocol) -> ProbeResult | None:
        """One probe; None when interrupted by a signal or the server's exit."""
        assert self.client is not None
        task = asyncio.ensure_future(probe(self.client, url, timeout))
        try:
            while True:
                if task.done():
                    return task.result()
                if self._interrupted(proto):
                    return None
                waiter = asyncio.ensure_future(self.wakeup.wait())
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not task.done():
                    self.wakeup.clear()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _watch(
        self, proto: ServerProtocol, plan: LaunchPlan, started: float
    ) -> Outcome | None:
        s = self.settings
        loop = asyncio.get_running_loop()
        url = health_url(plan.host, plan.port)
        deadline = started + s.startup_timeout
        ready_since: float | None = None
        failures = 0
        while True:
            self.wakeup.clear()
            if self.stop_signal:
                return None
            if self.reload_requested:
                new_plan = await self._replan()
                if new_plan is not None:
                    self.next_plan = new_plan
                    self.last_reason = "restarted on request (SIGHUP)"
                    return None
                continue
            if proto.exited:
                rc = proto.returncode
                was_ready = ready_since is not None
                ended = describe_exit(rc)
                self.last_reason = (
                    f"the server {'was ' if rc is not None and rc < 0 else ''}{ended}"
                    + (" after it was ready" if was_ready else " before it was ready")
                )
                (self.log.warning if was_ready else self.log.error)(self.last_reason)
                return Outcome(
                    Failure.EXITED,
                    was_ready=was_ready,
                    ready_for=loop.time() - ready_since if ready_since is not None else 0.0,
                    returncode=rc,
                )
            if ready_since is None:
                if loop.time() >= deadline:
                    self.last_reason = (
                        f"the server was not ready within {_fmt(s.startup_timeout)} s "
                        "(LAUNCHER_STARTUP_TIMEOUT)"
                    )
                    self.log.error(self.last_reason)
                    return Outcome(Failure.STARTUP_TIMEOUT)
                result = await self._probe(url, s.liveness_timeout, proto)
                if result is None:
                    continue
                if result.ok:
                    ready_since = loop.time()
                    self.log.info(
                        "server ready", url=url, startup_s=round(ready_since - started, 3)
                    )
                    self._status(
                        state="ready", ready_at=iso(time.time()), message=f"serving on {url}"
                    )
                    continue
                if self.ready_line_pending:
                    self.ready_line_pending = False
                    continue
                await self._pause(s.startup_period)
                continue
            if not await self._pause(s.liveness_period):
                continue
            result = await self._probe(url, s.liveness_timeout, proto)
            if result is None:
                continue
            reap_strays(keep=[proto.transport.get_pid()] if proto.transport else [])
            if result.ok:
                if failures:
                    self.log.info("server healthy again", url=url)
                    self._status(state="ready", message=f"serving on {url}")
                failures = 0
                continue
            failures += 1
            what = f"liveness probe {failures}/{s.liveness_failures} failed: {result.describe()}"
            self.log.warning(what, url=url)
            self._status(state="unhealthy", message=what)
            if failures >= s.liveness_failures:
                self.last_reason = (
                    f"the server failed {failures} liveness probes in a row "
                    f"({result.describe()}): restarting it"
                )
                self.log.error(self.last_reason)
                return Outcome(
                    Failure.UNHEALTHY, was_ready=True, ready_for=loop.time() - ready_since
                )

    async def _take_down(
        self, proto: ServerProtocol, pid: int, leader: psutil.Process | None
    ) -> None:
        """Stop the server's whole tree (no-op when it is already gone); wait for the pipe."""
        roots = [leader, self.me] if leader is not None else [self.me]
        tree = Tree(pid, roots, keep_pids=[pid])
        if not proto.exited:
            self._status(
                state="stopping",
                message=f"stopping the server (SIGTERM, then SIGKILL after "
                f"{_fmt(self.settings.stop_timeout)} s)",
            )
            self.log.info("stopping the server", pid=pid, timeout_s=self.settings.stop_timeout)

        def on_kill(remaining: list[psutil.Process]) -> None:
            why = (
                "on request"
                if self.hurry.is_set()
                else (f"after {_fmt(self.settings.stop_timeout)} s (LAUNCHER_STOP_TIMEOUT)")
            )
            self.log.warning(
                f"killing the server's processes {why}", pids=sorted(p.pid for p in remaining)
            )

        await tree.terminate(self.settings.stop_timeout, hurry=self.hurry, on_kill=on_kill)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proto.closed), 5.0)

    # --- after a failure ------------------------------------------------------------------

    def _hint(self, outcome: Outcome) -> str | None:
        """A likely cause read from the server's last lines, for the user's next step."""
        assert self.sink is not None
        hf_token_set = self.settings.hf_token is not None
        return hint_for(self.sink.last_lines(), outcome.returncode, hf_token_set=hf_token_set)

    async def _backoff(self, delay: float, hint: str | None) -> bool:
        """Wait before the next start; False when asked to stop meanwhile."""
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        self._status(
            state="backoff",
            next_start_at=iso(time.time() + delay),
            message=f"restarting in {_fmt(delay)} s: {self.last_reason}",
        )
        self.log.warning(
            f"restarting the server in {_fmt(delay)} s",
            reason=self.last_reason,
            **({"hint": hint} if hint else {}),
        )
        while True:
            self.wakeup.clear()
            if self.stop_signal:
                return False
            if self.reload_requested:
                new_plan = await self._replan()
                if new_plan is not None:
                    self.next_plan = new_plan
                    return not self.stop_signal
            remaining = until - loop.time()
            if remaining <= 0:
                return True
            await self._pause(remaining)

    def _give_up(self, verdict: Verdict, outcome: Outcome) -> int:
        assert self.sink is not None
        lines = self.sink.last_lines()
        hint = self._hint(outcome)
        last_exit = describe_exit(outcome.returncode) if outcome.returncode is not None else None
        reason = f"{verdict.reason}: {self.last_reason}" if self.last_reason else verdict.reason
        self._status(
            state="failed",
            server_pid=None,
            message=f"gave up: {reason}",
            last_reason=reason,
            last_error=lines,
            hint=hint or None,
        )
        text = [f"giving up: {reason}"]
        if hint:
            text.append(f"  hint: {hint}")
        if lines:
            text.append(f"  last {len(lines)} server lines:")
            text.extend(f"    | {_clip(line)}" for line in lines)
        text.append(
            "  fix the cause, then start the launcher again (supervisorctl start sglang, "
            "or restart the instance)"
        )
        if self.settings.log_format == "json":
            self.log.error(
                "giving up", reason=reason, last_exit=last_exit, hint=hint, last_lines=lines
            )
        else:
            self.log.error("\n".join(text))
        self.sink.note(text[:2])
        return EX_CONFIG


def _clip(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def command_run(settings: Settings, args: argparse.Namespace) -> int:
    """``run``: supervise the server until stopped (0) or given up (78)."""
    sys.stdout.flush()
    stdout: BinaryIO | None = getattr(sys.stdout, "buffer", None)
    try:
        return asyncio.run(Supervisor(settings, stdout).run())
    except LauncherError:
        raise  # explained in one line by the CLI, with its own exit status
    except Exception:
        # A bug in the launcher itself. supervisord (startsecs=0) would restart it at once,
        # forever: pausing first keeps a crash loop as slow as the server's own backoff.
        get_logger("vast_sglang_launcher.supervise").exception(
            "the launcher failed (a bug: please report this traceback); exiting in "
            f"{_fmt(settings.backoff_max)} s (LAUNCHER_BACKOFF_MAX)"
        )
        time.sleep(settings.backoff_max)
        return 1


def running_launcher(run_dir: Path) -> int | None:
    """The pid of the launcher holding ``run_dir``'s lock, or None when none runs."""
    pid_file = run_dir / LAUNCHER_PID_FILE
    try:
        fd = os.open(pid_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_pid(pid_file)  # locked: a launcher runs
    else:
        return None
    finally:
        os.close(fd)


def command_restart(settings: Settings, args: argparse.Namespace) -> int:
    """``restart``: send SIGHUP to the running launcher (it re-reads the args file)."""
    pid = running_launcher(settings.run_dir)
    if pid is None:
        print(
            f"vast-sglang-launcher: no running launcher found in {settings.run_dir} "
            "(LAUNCHER_RUN_DIR)",
            file=sys.stderr,
        )
        return 1
    os.kill(pid, signal.SIGHUP)
    print(f"asked the launcher (pid {pid}) to restart the server")
    return 0
