"""The restart loop of `run`: wait for provisioning, plan, then start the server again and
again (one `Attempt` each) as the restart policy says, until stopped or given up.

One asyncio loop does everything. The server runs in a session of its own with PDEATHSIG
SIGKILL (it dies with the launcher), which is a child subreaper (orphans come back to it).
SIGTERM/SIGINT stop the whole tree; SIGHUP restarts it with a fresh plan; status.json
follows every state change (`states`). Exit status: 0 after a requested stop (or when no
model is set), 78 (EX_CONFIG) when it gives up: supervisord treats 78 as final.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import BinaryIO

import psutil

from .. import markers
from ..coldstart.gate import stop_download, wait_for_weights
from ..coldstart.phases import PhaseTracker
from ..errors import EX_CONFIG, LauncherError
from ..logs import get_logger
from ..plan.build import LaunchPlan
from ..plan.prepare import prepare_plan
from ..redact import settings_secrets
from ..scaleout.join import gateway_membership
from ..settings import Settings
from ..timestamps import iso
from .attempt import Attempt, fmt_seconds
from .control import Control
from .failure_hints import PORT_BUSY_HINT, Diagnosis, diagnose
from .lifecycle import Lifecycle
from .probes import make_client
from .process import describe_exit, set_child_subreaper
from .provisioning_gate import wait_until_gone
from .restart_policy import Failure, Outcome, RestartHistory, RestartPolicy, Verdict
from .run_dir import RunDir
from .server_output import OutputSink
from .states import ServerState
from .status_writer import StatusFile
from .stdout_relay import LineRelay

SERVER_LOG_FILE = "sglang.log"


class Supervisor:
    """The ``run`` command; one instance per launcher process."""

    def __init__(self, settings: Settings, stdout: LineRelay | BinaryIO | None) -> None:
        self.settings = settings
        self.stdout = stdout
        self.log = get_logger("vast_sglang_launcher.supervise")
        me = psutil.Process()
        self.run_dir = RunDir(settings.run_dir, me.pid)
        self.lifecycle = Lifecycle(
            StatusFile(
                settings.status_file,
                settings_secrets(settings),
                launcher_pid=me.pid,
                launcher_started=me.create_time(),
            ),
            self.log,
        )
        self.policy = RestartPolicy(
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            backoff_reset=settings.backoff_reset,
            start_retries=settings.start_retries,
        )
        self.restarts = 0
        self.history = RestartHistory()
        self.last_reason = ""

    async def run(self) -> int:
        self.control = Control(self.log)
        self.control.install(asyncio.get_running_loop())
        set_child_subreaper()
        self.run_dir.claim()
        sink = OutputSink(
            self.stdout,
            self.settings.log_dir / SERVER_LOG_FILE,
            self.settings.tail_lines,
            max_bytes=self.settings.log_max_bytes,
            backups=self.settings.log_backups,
            warn=self.log.warning,
        )
        if sink.log_error:
            self.log.warning(
                f"server output goes to stdout only, not to the log file: {sink.log_error}"
                " (LAUNCHER_LOG_DIR)"
            )
        client = make_client()
        self.sink = sink
        self.membership = None
        self.phases = PhaseTracker(self.lifecycle.note, self.log, self.settings.stall_timeout)
        try:
            self.membership = gateway_membership(
                self.settings, client, self.log, lambda g: self.lifecycle.note(gateway=g)
            )
            self.attempt = Attempt(
                self.settings,
                self.control,
                self.lifecycle,
                sink,
                client,
                self.run_dir,
                self._replan,
                self.log,
                self.membership,
                self.phases,
            )
            return await self._main()
        finally:
            # Every stop: no orphan partials (the download runs only while no server does).
            await stop_download(self.settings, self.log, self.settings.stop_timeout)
            if self.membership is not None:
                await self.membership.close()
            await client.aclose()
            sink.close()
            self.run_dir.release()

    def uninstall_signals(self) -> None:
        control = getattr(self, "control", None)
        if control is not None:
            control.uninstall()

    async def _main(self) -> int:
        control = self.control
        await self.run_dir.stop_leftover(
            self.settings.stop_timeout, control.hurry, self._announce_leftover
        )
        if control.stop_signal:
            return self._stopped()
        if not await self._wait_for_provisioning():
            return self._stopped()
        weights = await wait_for_weights(
            self.settings, control.stop_event, self.phases, self.log, self._downloading
        )
        if control.stop_signal:
            return self._stopped()
        if weights.download:
            self.lifecycle.note(download=weights.download)
        if not weights.start:
            self.lifecycle.to(ServerState.FAILED, message=weights.line, last_reason=weights.line)
            self.sink.note([f"giving up: {weights.line}"])
            return EX_CONFIG
        control.reload_requested = False  # a SIGHUP before the first plan changes nothing
        plan = await self._first_plan()
        if control.stop_signal:
            return self._stopped()
        if plan.model is None:
            self.log.info("not starting: SGLANG_MODEL is not set")
            self.lifecycle.to(ServerState.STOPPED, message="not starting: SGLANG_MODEL is not set")
            return 0
        while True:
            result = await self.attempt.run(plan, self.restarts)
            self.last_reason = self.attempt.reason
            if control.stop_signal:
                return self._stopped()
            if isinstance(result, LaunchPlan):  # SIGHUP with a good new plan
                plan = result
                self.policy.reset()
                self._count_restart()
                continue
            assert result is not None
            diagnosis = self._diagnose(result)
            result = dataclasses.replace(result, permanent=diagnosis.permanent)
            verdict = self.policy.decide(result)
            if verdict.give_up:
                return self._give_up(verdict, result, diagnosis)
            next_plan = await self._backoff(verdict.delay, diagnosis.hint)
            if control.stop_signal:
                return self._stopped()
            if next_plan is not None:
                plan = next_plan
                self.policy.reset()
            self._count_restart()

    def _count_restart(self) -> None:
        """One more restart: counted in status.json, with a warning when it flaps."""
        self.restarts += 1
        recent = self.history.record(time.monotonic())
        self.lifecycle.note(restarts=self.restarts, restarts_last_hour=recent)
        threshold = self.settings.flap_threshold
        if recent > threshold:
            self.log.warning(
                f"the server is flapping: {recent} restarts in the last hour "
                f"(more than LAUNCHER_FLAP_THRESHOLD={threshold}); the last one because "
                f"{self.last_reason or 'of a restart request'}"
            )

    def _announce_leftover(self, pids: list[int]) -> None:
        self.log.warning("stopping a server left over by an earlier launcher", pids=pids)
        self.lifecycle.to(
            ServerState.STOPPING, message="stopping a server left over by an earlier launcher"
        )

    async def _wait_for_provisioning(self) -> bool:
        """Wait while the provisioning marker exists; False when asked to stop meanwhile."""
        marker = self.settings.marker(markers.PROVISIONING)
        if not os.path.lexists(marker):
            return True
        self.lifecycle.to(
            ServerState.WAITING_PROVISIONING,
            message=f"waiting for provisioning to finish ({marker} exists)",
        )
        self.log.info("waiting for provisioning to finish", marker=str(marker))
        self.phases.enter("waiting_provisioning")
        marker_dir = self.settings.marker_dir
        released = await wait_until_gone(
            marker,
            self.control.stop_event,
            heartbeat=lambda waited: self.log.info(
                "still waiting for provisioning", marker=str(marker), waited_s=int(waited)
            ),
            abandoned=lambda: markers.provisioning_abandoned(marker_dir),
        )
        if not released:
            return False
        if markers.provisioning_abandoned(marker_dir):
            # Its owner was killed mid-run: waiting longer would wait forever.
            self.log.warning(
                "provisioning died without finishing; starting the server anyway",
                marker=str(marker),
            )
            markers.remove(marker)
        else:
            self.log.info("provisioning finished")
        return True

    def _downloading(self) -> None:
        self.lifecycle.to(ServerState.STARTING, message="waiting for the weights to download")

    async def _first_plan(self) -> LaunchPlan:
        try:
            return await asyncio.to_thread(prepare_plan, self.settings)
        except LauncherError as exc:
            self.lifecycle.to(ServerState.FAILED, message=str(exc), last_reason=str(exc))
            self.sink.note([f"giving up: {exc}"])  # the give-up line in sglang.log, as below
            raise

    async def _replan(self) -> LaunchPlan | None:
        """A fresh plan for SIGHUP; None (server left as it is) when the plan fails."""
        self.control.reload_requested = False
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
        self.lifecycle.to(
            ServerState.STOPPED,
            server_pid=None,
            message=f"stopped ({self.control.stop_signal})",
        )
        self.log.info("stopped")
        return 0

    # --- after a failure ------------------------------------------------------------------

    def _diagnose(self, outcome: Outcome) -> Diagnosis:
        """A likely cause read from the server's last lines, for the user's next step; also
        recorded in status.json (``hint``, null when there is none)."""
        if outcome.failure is Failure.PORT_BUSY:
            found = Diagnosis(PORT_BUSY_HINT)
        else:
            hf_token_set = self.settings.hf_token is not None
            found = diagnose(
                self.sink.last_lines(),
                outcome.returncode,
                hf_token_set,
                served=self.policy.has_served(outcome),
            )
        self.lifecycle.note(hint=found.hint or None)
        return found

    async def _backoff(self, delay: float, hint: str | None) -> LaunchPlan | None:
        """Wait before the next start; a fresh plan when a restart was requested meanwhile
        (SIGHUP), else None. Check `control.stop_signal` after it."""
        control = self.control
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        self.lifecycle.to(
            ServerState.BACKOFF,
            next_start_at=iso(time.time() + delay),
            message=f"restarting in {fmt_seconds(delay)} s: {self.last_reason}",
            hint=hint or None,
        )
        self.log.warning(
            f"restarting the server in {fmt_seconds(delay)} s",
            reason=self.last_reason,
            **({"hint": hint} if hint else {}),
        )
        while True:
            control.wakeup.clear()
            if control.stop_signal:
                return None
            if control.reload_requested:
                new_plan = await self._replan()
                if new_plan is not None:
                    return new_plan
            remaining = until - loop.time()
            if remaining <= 0:
                return None
            await control.pause(remaining)

    def _give_up(self, verdict: Verdict, outcome: Outcome, diagnosis: Diagnosis) -> int:
        lines = self.sink.last_lines()
        hint = diagnosis.hint
        last_exit = describe_exit(outcome.returncode) if outcome.returncode is not None else None
        reason = f"{verdict.reason}: {self.last_reason}" if self.last_reason else verdict.reason
        self.lifecycle.to(
            ServerState.FAILED,
            server_pid=None,
            message=f"gave up: {reason}",
            last_reason=reason,
            last_error=lines,
            hint=hint or None,
        )
        # Every exit 78 after the server's log is open writes one line that starts
        # "[vast-sglang-launcher] giving up: " into sglang.log (`OutputSink.note`): Vast's
        # serverless worker reports it as the error (serverless.worker_config.GIVE_UP_LINE).
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
