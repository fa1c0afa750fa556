"""The `run` command's supervisor: claim the run directory, stop a server an earlier launcher
left, wait for provisioning and the weights, make the first plan, then hand it to the
restart loop (`restart_loop`) until stopped or given up.

One asyncio loop does everything, fed by one event queue (`control`): signal handlers only
queue. The server runs in a session of its own with PDEATHSIG SIGKILL (it dies with the
launcher), which is a child subreaper (orphans come back to it). SIGTERM/SIGINT stop the
whole tree; SIGHUP restarts it with a fresh plan; status.json follows every state change
(`states`). Exit status: 0 after a requested stop (or when no model is set), 78 (EX_CONFIG)
when it gives up: supervisord treats 78 as final.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
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
from .attempt import Attempt
from .control import Control, Kind
from .lifecycle import Lifecycle
from .probes import make_client
from .process import set_child_subreaper
from .provisioning_gate import wait_until_gone
from .restart_loop import RestartLoop
from .run_dir import RunDir
from .server_output import OutputSink
from .states import ServerState
from .status_writer import StatusFile
from .stdout_relay import LineRelay

SERVER_LOG_FILE = "sglang.log"

Step = Callable[[OutputSink], Awaitable["int | None"]]


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
        self.control = Control(self.log)
        self.phases = PhaseTracker(self.lifecycle.note, self.log, settings.stall_timeout)

    async def run(self) -> int:
        """Set up (signals, the run directory, the server's log), serve, clean up."""
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
        membership = None
        try:
            membership = gateway_membership(
                self.settings, client, self.log, lambda g: self.lifecycle.note(gateway=g)
            )
            attempt = Attempt(
                self.settings,
                self.control,
                self.lifecycle,
                sink,
                client,
                self.run_dir,
                self.log,
                membership,
                self.phases,
            )
            loop = RestartLoop(
                self.settings, self.control, self.lifecycle, sink, attempt, self._replan, self.log
            )
            return await self._serve(sink, loop)
        finally:
            # Every stop: no orphan partials (the download runs only while no server does).
            await stop_download(self.settings, self.log, self.settings.stop_timeout)
            if membership is not None:
                await membership.close()
            await client.aclose()
            sink.close()
            self.run_dir.release()

    def uninstall_signals(self) -> None:
        self.control.uninstall()

    async def _serve(self, sink: OutputSink, restart_loop: RestartLoop) -> int:
        """The steps before the first start, each ended early by a stop, then the loop."""
        steps: list[Step] = [
            self._stop_leftover,
            self._wait_for_provisioning,
            self._wait_for_weights,
        ]
        for step in steps:
            code = await step(sink)
            if self.control.stop_signal:
                return self._stopped()
            if code is not None:
                return code
        plan = await self._first_plan(sink)
        if self.control.stop_signal:
            return self._stopped()
        if plan.model is None:
            self.log.info("not starting: SGLANG_MODEL is not set")
            self.lifecycle.to(ServerState.STOPPED, message="not starting: SGLANG_MODEL is not set")
            return 0
        code = await restart_loop.run(plan)
        return self._stopped() if code is None else code

    async def _stop_leftover(self, sink: OutputSink) -> None:
        await self.run_dir.stop_leftover(
            self.settings.stop_timeout, self.control.hurry, self._announce_leftover
        )

    def _announce_leftover(self, pids: list[int]) -> None:
        self.log.warning("stopping a server left over by an earlier launcher", pids=pids)
        self.lifecycle.to(
            ServerState.STOPPING, message="stopping a server left over by an earlier launcher"
        )

    async def _wait_for_provisioning(self, sink: OutputSink) -> None:
        """Wait while the provisioning marker exists (or until asked to stop)."""
        marker = self.settings.marker(markers.PROVISIONING)
        if not os.path.lexists(marker):
            return
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
            return
        if markers.provisioning_abandoned(marker_dir):
            # Its owner was killed mid-run: waiting longer would wait forever.
            self.log.warning(
                "provisioning died without finishing; starting the server anyway",
                marker=str(marker),
            )
            markers.remove(marker)
        else:
            self.log.info("provisioning finished")

    async def _wait_for_weights(self, sink: OutputSink) -> int | None:
        weights = await wait_for_weights(
            self.settings, self.control.stop_event, self.phases, self.log, self._downloading
        )
        if self.control.stop_signal:
            return None
        if weights.download:
            self.lifecycle.note(download=weights.download)
        if not weights.start:
            self.lifecycle.to(ServerState.FAILED, message=weights.line, last_reason=weights.line)
            sink.note([f"giving up: {weights.line}"])
            return EX_CONFIG
        return None

    def _downloading(self) -> None:
        self.lifecycle.to(ServerState.STARTING, message="waiting for the weights to download")

    async def _first_plan(self, sink: OutputSink) -> LaunchPlan:
        self.control.discard(frozenset({Kind.RELOAD}))  # a SIGHUP before it changes nothing
        try:
            return await asyncio.to_thread(prepare_plan, self.settings)
        except LauncherError as exc:
            self.lifecycle.to(ServerState.FAILED, message=str(exc), last_reason=str(exc))
            sink.note([f"giving up: {exc}"])  # the give-up line in sglang.log, as below
            raise

    async def _replan(self) -> LaunchPlan | None:
        """A fresh plan for SIGHUP; None (server left as it is) when the plan fails."""
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
