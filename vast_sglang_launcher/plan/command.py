"""`plan`: show the command the launcher would run and every decision behind it."""

from __future__ import annotations

import argparse
import json
import sys

from ..settings import Settings
from .build import LaunchPlan
from .prepare import prepare_plan

NO_MODEL = "not starting: SGLANG_MODEL is not set"


def render_text(plan: LaunchPlan) -> str:
    """A person's view: the command, a decisions table, then the warnings."""
    lines = [plan.command_line(), ""]
    rows = [("decision", "value", "source", "why")] + [
        (d.what, d.value, d.source, d.why) for d in plan.decisions
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )
    gpus = plan.gpus
    if gpus is not None:
        names = ", ".join(sorted({g.name for g in gpus.gpus})) or "no details"
        lines += ["", f"GPUs: {gpus.count} ({gpus.source}; {names})"]
    info = plan.model_info
    if info is not None:
        lines.append(
            f"Model: {info.heads} attention heads, {info.kv_heads} kv heads, "
            f"{info.architecture or 'architecture unknown'} ({info.source})"
        )
    lines.append(f"SGLang options: {plan.option_table}")
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def command_plan(settings: Settings, args: argparse.Namespace) -> int:
    plan = prepare_plan(settings)
    if args.json:
        data = plan.as_dict()
        # The environment holds secrets and is long; show only what the launcher sets.
        data["env"] = {
            k: plan.env[k] for k in ("SGLANG_MODEL", "MODEL_NAME", "HOME") if k in plan.env
        }
        if plan.model is None:
            data["warnings"] = [NO_MODEL, *data["warnings"]]
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if plan.model is None:
        print(NO_MODEL)
        for w in plan.warnings:
            print(f"warning: {w}")
        return 0
    print(render_text(plan))
    return 0
