"""`plan`: show the command the launcher would run and every decision behind it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from ..redact import argv_redactor, mask_argv
from ..settings import Settings
from .build import CHANGED_ENV, LaunchPlan
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
    lines.append(
        f"SGLang options: table of SGLang {plan.option_table_version} ({plan.option_table}): "
        f"{plan.option_table_why}"
    )
    lines.append(f"Args file: {plan.args_file}")
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def command_plan(settings: Settings, args: argparse.Namespace) -> int:
    planned = prepare_plan(settings)
    # Secrets (--api-key and the like, HF_TOKEN, OPEN_BUTTON_TOKEN) never reach the output.
    redact = argv_redactor(settings, planned.argv)
    plan = dataclasses.replace(planned, argv=mask_argv(planned.argv))
    if args.json:
        data = plan.as_dict()
        # The environment holds secrets and is long; show only what the launcher sets.
        data["env"] = {
            k: plan.env[k] for k in ("SGLANG_MODEL", "MODEL_NAME", "HOME") if k in plan.env
        }
        # and what the launcher changed of the hub's directories and the thread pools
        data["env"].update(
            (k, plan.env[k])
            for k in CHANGED_ENV
            if k in plan.env and plan.env[k] != os.environ.get(k)
        )
        if plan.model is None:
            data["warnings"] = [NO_MODEL, *data["warnings"]]
        json.dump(redact.data(data), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if plan.model is None:
        print(NO_MODEL)
        for w in plan.warnings:
            print(redact(f"warning: {w}"))
        return 0
    print(redact(render_text(plan)))
    return 0
