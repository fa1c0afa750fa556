"""Gather the plan's inputs (args file, NVML, config.json, option table), then build the plan.

This is the only impure step before planning: it reads what the environment points at and
hands plain values to the pure ``build_plan``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from ..coldstart.preflight import plan_warnings, shm_bytes
from ..settings import Settings
from .build import LaunchPlan, build_plan
from .gpus import GpuInventory, discover
from .model_info import HubAccess, read_model_info
from .options import OptionTable, load_table, scan
from .user_args import read_user_args


def prepare_plan(settings: Settings, environ: Mapping[str, str] | None = None) -> LaunchPlan:
    """Read the args file, count GPUs, read the model's heads, and plan. May raise ConfigError."""
    base_env = dict(os.environ if environ is None else environ)
    table = load_table(settings.option_table)
    user = read_user_args(settings.sglang_args, settings.sglang_args_file)
    # The user's own --model-path / --revision count, exactly as SGLang would read them.
    user_scan = scan(table, user.tokens, user.sources)
    in_args = user_scan.last("model_path")
    model = in_args.value if in_args is not None and in_args.value else settings.model
    notes: list[str] = []
    info = None
    gpus = GpuInventory((), "not checked: no model to serve")
    if model:
        gpus = discover(
            settings.cuda_visible_devices, settings.nvidia_visible_devices, settings.gpu_count
        )
        revision = user_scan.last("revision")
        hub = HubAccess(
            settings.hf_endpoint,
            settings.hf_token.get_secret_value() if settings.hf_token else None,
            settings.model_info_timeout,
            settings.hf_hub_offline,
        )
        info, warning = read_model_info(
            model, revision.value if revision else None, settings.hub_cache, hub
        )
        if warning:
            notes.append(warning)
    plan = build_plan(settings, user, gpus, info, table, base_env, tuple(notes))
    if not model or not plan.argv:
        return plan
    rev = revision.value if revision else None
    plan = dataclasses.replace(plan, revision=rev)
    tp = _final_size(table, plan.argv, "--tp-size")
    pp = _final_size(table, plan.argv, "--pp-size")
    plan.warnings.extend(
        plan_warnings(
            plan.model or model,
            rev,
            tp,
            pp,
            [(g.name, g.memory_mib) for g in gpus.gpus],
            settings.hub_cache,
            hub,
            shm_bytes(),
        )
    )
    return plan


def _final_size(table: OptionTable, argv: list[str], option: str) -> int:
    """The size the server will get for a parallelism option such as `--tp-size` (its last
    occurrence in the argv, through every alias and abbreviation); 1 when absent."""
    opt = table.by_string.get(option)
    if opt is None:
        return 1
    start = next((i for i, word in enumerate(argv) if word.startswith("--")), len(argv))
    occ = scan(table, argv[start:]).last(opt.dest)
    try:
        return max(1, int(occ.value)) if occ is not None and occ.value else 1
    except ValueError:
        return 1
