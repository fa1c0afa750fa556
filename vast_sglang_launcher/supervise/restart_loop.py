"""The restart loop: one `Attempt` after another, as the restart policy says, until the
launcher is stopped or gives up.

Each attempt ends with one `AttemptResult`, handled by the one handler of its `End`: a
failure is diagnosed and either given up on or followed by a backoff; a restart request
starts the fresh plan at once; a stop ends the loop. A restart request (SIGHUP) during a
watch is answered here, not by the attempt: a fresh plan is made while the server keeps
running, and a plan that fails leaves it as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import EX_CONFIG
from ..plan.build import LaunchPlan
from ..settings import Settings
from ..timestamps import iso
from .attempt import Attempt, AttemptResult, End
from .control import Control, Kind
from .failure_hints import PORT_BUSY_HINT, Diagnosis, diagnose
from .lifecycle import Lifecycle
from .process import describe_exit
from .restart_policy import Failure, Outcome, RestartHistory, RestartPolicy, Verdict
from .server_output import OutputSink
from .states import ServerState
from .watch import fmt_seconds

Replan = Callable[[], Awaitable["LaunchPlan | None"]]


class RestartLoop:
    def __init__(
        self,
        settings: Settings,
        control: Control,
        lifecycle: Lifecycle,
        sink: OutputSink,
        attempt: Attempt,
        replan: Replan,
        log: Any,
    ) -> None:
        self.settings = settings
        self.control = control
        self.lifecycle = lifecycle
        self.sink = sink
        self.attempt = attempt
        self.replan = replan
        """A fresh plan for a restart request; None when it fails (the reason is logged)."""
        self.log = log
        self.policy = RestartPolicy(
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            backoff_reset=settings.backoff_reset,
            start_retries=settings.start_retries,
        )
        self.restarts = 0
        self.history = RestartHistory()
        self.last_reason = ""

    async def run(self, plan: LaunchPlan) -> int | None:
        """Serve ``plan`` (and the plans of restart requests); EX_CONFIG when it gives up,
        None when the launcher was asked to stop."""
        while True:
            result = await self._attempt(plan)
            self.last_reason = result.reason
            if result.end is End.STOPPED or self.control.stop_signal:
                return None
            if result.end is End.RESTART:
                assert result.plan is not None
                plan = self._restart_with(result.plan)
                continue
            assert result.outcome is not None
            diagnosis = self._diagnose(result.outcome)
            outcome = dataclasses.replace(result.outcome, permanent=diagnosis.permanent)
            verdict = self.policy.decide(outcome)
            if verdict.give_up:
                return self._give_up(verdict, outcome, diagnosis)
            backoff = await self._backoff(verdict.delay, diagnosis.hint)
            if backoff.end is End.STOPPED:
                return None
            if backoff.plan is not None:
                plan = self._restart_with(backoff.plan)
            else:
                self._count_restart()

    async def _attempt(self, plan: LaunchPlan) -> AttemptResult:
        """Start, watch (answering restart requests) and finish one attempt."""
        attempt = self.attempt
        started = await attempt.start(plan, self.restarts)
        if started is not None:
            return started
        result: AttemptResult | None = None
        try:
            while (result := await attempt.watch()).end is End.RELOAD:
                new_plan = await self.replan()
                if new_plan is not None:
                    result = dataclasses.replace(result, end=End.RESTART, plan=new_plan)
                    break
        finally:
            result = await attempt.finish(result)
        assert result is not None
        return result

    def _restart_with(self, plan: LaunchPlan) -> LaunchPlan:
        """A fresh plan on request: a new start, with the failures of the old plan forgotten."""
        self.policy.reset()
        self._count_restart()
        return plan

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

    async def _backoff(self, delay: float, hint: str | None) -> AttemptResult:
        """Wait before the next start, taking the events meanwhile: STOPPED on a stop,
        RESTART with the fresh plan on a restart request whose plan is good; once the delay
        is over, FAILED (the failure that this backoff follows: start the same plan again)."""
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
            event = await self.control.next(max(0.0, until - loop.time()))
            if event is None:
                return AttemptResult(End.FAILED, self.last_reason)
            if event.kind is Kind.STOP:
                return AttemptResult(End.STOPPED)
            if event.kind is Kind.RELOAD:
                new_plan = await self.replan()
                if new_plan is not None:
                    return AttemptResult(End.RESTART, self.last_reason, plan=new_plan)
            # other events concern the server that is gone

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
