"""Gather the plan's inputs (args file, NVML, config.json, option table), then build the plan.

This is the only impure step before planning: it reads what the environment points at and
hands plain values to the pure ``build_plan``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigError
from ..host_limits import read_host_limits, thread_caps
from ..hub import hub_access
from ..settings import Settings
from ..values import check_model
from .build import LaunchPlan, build_plan, read_words, served_model
from .fit import plan_warnings, shm_bytes
from .gpus import GpuInventory, discover
from .installed import installed_sglang
from .known_options import MODEL_PATH
from .model_info import read_model_info
from .table_choice import choose_table
from .user_args import read_user_args


def prepare_plan(settings: Settings, environ: Mapping[str, str] | None = None) -> LaunchPlan:
    """Read the args file, count GPUs, read the model's heads, and plan. May raise ConfigError."""
    base_env = dict(os.environ if environ is None else environ)
    explicit = "option_table" in settings.model_fields_set
    installed = (
        None
        if explicit
        else installed_sglang(settings.sglang_command_words, base_env.get("PATH", os.defpath))
    )
    choice = choose_table(settings.option_table, explicit, installed)
    user = read_user_args(settings.sglang_args, settings.sglang_args_file)
    # The user's own --model-path / --revision count, exactly as SGLang would read them.
    words = read_words(settings, user, choice.table)
    in_args = words.last(MODEL_PATH)
    if in_args is not None and in_args.value:
        _check_model_arg(in_args.value, in_args.source)
    model, revision = served_model(settings, words)
    notes: list[str] = list(choice.warnings)
    notes += _model_url_note(settings, base_env)
    info = None
    gpus = GpuInventory((), "not checked: no model to serve")
    hub = hub_access(settings)
    if model:
        gpus = discover(
            settings.cuda_visible_devices, settings.nvidia_visible_devices, settings.gpu_count
        )
        info, warning = read_model_info(model, revision, settings.hub_cache, hub)
        if warning:
            notes.append(warning)
    notes += words.problems  # e.g. a table without --revision; build_plan drops repeats
    threads = thread_caps(read_host_limits(), base_env) if model else None
    plan = build_plan(
        settings,
        user,
        gpus,
        info,
        choice.table,
        base_env,
        tuple(notes),
        choice.why,
        threads,
        words,
    )
    if plan.model is None:
        return plan
    plan.warnings.extend(
        plan_warnings(
            plan.model,
            plan.revision,
            plan.tp,
            plan.pp,
            [(g.name, g.memory_mib) for g in gpus.gpus],
            settings.hub_cache,
            hub,
            shm_bytes(),
        )
    )
    return plan


def _check_model_arg(value: str, source: str) -> None:
    """The user's own --model-path must be what `SGLANG_MODEL` may be (ConfigError, exit 78):
    huggingface_hub would refuse a malformed repo id with a traceback in the server."""
    try:
        fixed = check_model(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: --model-path {value!r} is not valid: {exc}") from None
    if fixed != value:
        raise ConfigError(
            f"{source}: --model-path {value!r} is a hub page URL: write its repo id {fixed}"
        )


def _model_url_note(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """A note when SGLANG_MODEL (or MODEL_NAME) was a hub page URL read as its repo id."""
    for var in ("SGLANG_MODEL", "MODEL_NAME"):
        raw = env.get(var, "")
        if raw.strip():
            if settings.model and raw != settings.model:
                return [f"{var} is a hub page URL: serving its repo id {settings.model}"]
            return []
    return []
