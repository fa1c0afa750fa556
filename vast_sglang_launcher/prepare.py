"""Gather the plan's inputs (args file, NVML, config.json) and build the plan."""

from __future__ import annotations

import os
import shlex

from .plan import LaunchPlan
from .settings import Settings


def prepare_plan(settings: Settings) -> LaunchPlan:
    """TEMPORARY STUB until the real planner lands (same signature)."""
    env = dict(os.environ)
    if settings.model:
        env["SGLANG_MODEL"] = env["MODEL_NAME"] = settings.model
    env["HOME"] = str(settings.workspace)
    argv = shlex.split(settings.sglang_command)
    if settings.model:
        argv += ["--model-path", settings.model]
    argv += shlex.split(settings.sglang_args)
    argv += ["--host", settings.sglang_host, "--port", str(settings.sglang_port)]
    return LaunchPlan(
        argv=argv,
        env=env,
        cwd=settings.workspace,
        host=settings.sglang_host,
        port=settings.sglang_port,
        model=settings.model,
    )
