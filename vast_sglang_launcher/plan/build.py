"""The launch plan: a pure function from what was gathered to the exact argv and env.

Nothing here reads the environment, a file or NVML, and nothing starts a process: the same
inputs always give the same plan, so every decision can be tested without a GPU.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..host_limits import POOL_VARIABLES, ThreadCaps
from ..loopback import reachable_host
from ..settings import DEFAULT_SERVER_PORT, Settings
from .caches import cache_env
from .dp_attention import AttentionDp, attention_dp, attention_tp
from .gpus import GpuInventory
from .known_options import (
    ATTN_DP,
    BASE_GPU_ID,
    DIST_INIT_ADDR,
    DP,
    ENABLE_DP_ATTENTION,
    GPU_ID_STEP,
    HOST,
    MODEL_PATH,
    NNODES,
    NODE_RANK,
    PORT,
    PP,
    REVISION,
    TP,
    Known,
)
from .model_info import ModelInfo
from .options import OptionTable, UserOptions, read_user_options
from .ranks import Ranks, discover_ranks
from .serve_cli import is_serve, model_spellings, server_words
from .user_args import UserArgs

SERVE_HOST = "127.0.0.1"
SERVE_PORT = DEFAULT_SERVER_PORT


@dataclass(frozen=True)
class Decision:
    """One thing the launcher chose: what, the value, where it came from, and why."""

    what: str
    value: str
    source: str
    why: str


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start the server; nothing in it is decided later."""

    argv: list[str]
    env: dict[str, str]
    """The whole environment of the server process."""
    cwd: Path
    host: str
    """Where the launcher probes the server (a wildcard listen address becomes loopback)."""
    port: int
    model: str | None
    decisions: list[Decision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gpus: GpuInventory | None = None
    model_info: ModelInfo | None = None
    option_table: str = ""
    """Where the SGLang option table came from (a file or a shipped snapshot)."""
    option_table_version: str = ""
    option_table_why: str = ""
    args_file: str = ""
    """What became of the args file: read (how many words), empty, or not found."""
    node_rank: int = 0
    """Multi-node: this machine's rank. Only rank 0 serves the API (and joins a gateway)."""

    @property
    def serves_api(self) -> bool:
        return self.node_rank == 0

    revision: str | None = None
    """The model's revision (the user's --revision), for the prefetch."""
    tp: int = 1
    """The tensor-parallel size the server gets (the user's or the launcher's; 1 when unset)."""
    pp: int = 1
    """The pipeline-parallel size the server gets (1 when unset)."""

    def command_line(self) -> str:
        return shlex.join(self.argv)

    def as_dict(self) -> dict[str, Any]:
        return {
            "argv": self.argv,
            "env": self.env,
            "cwd": str(self.cwd),
            "probe": {"host": self.host, "port": self.port},
            "model": {
                "name": self.model,
                **(self.model_info.as_dict() if self.model_info else {"source": None}),
            },
            "gpus": self.gpus.as_dict() if self.gpus else None,
            "option_table": {
                "source": self.option_table,
                "sglang_version": self.option_table_version,
                "why": self.option_table_why,
            },
            "args_file": self.args_file,
            "node_rank": self.node_rank,
            "decisions": [d.__dict__ for d in self.decisions],
            "warnings": self.warnings,
        }


@dataclass
class _Builder:
    user: UserOptions
    decisions: list[Decision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    additions: list[str] = field(default_factory=list)
    added: dict[Known, str] = field(default_factory=dict)
    """The value of each option the launcher added."""

    def decide(self, what: str, value: object, source: str, why: str) -> None:
        self.decisions.append(Decision(what, str(value), source, why))

    def add(self, known: Known, value: object, source: str, why: str) -> None:
        """Append ``known`` with its value, spelled as the loaded table spells it; never an
        option the table lacks (it could duplicate one the user gave under another name)."""
        resolved = self.user.resolve(known)
        if resolved.flag is None:
            self.warnings.append(f"not adding {known} {value} ({why}): {resolved.problem}")
            return
        self.additions += [resolved.flag, str(value)]
        self.added[known] = str(value)
        self.decide(resolved.flag, value, source, why)


def read_words(settings: Settings, user: UserArgs, table: OptionTable) -> UserOptions:
    """The user's words as SGLang's server parser reads them under `table` (after what
    `sglang serve` takes out first, see serve_cli): the one scan of a plan."""
    command = list(settings.sglang_command_words)
    return read_user_options(
        table, *server_words(command, table.version, user.tokens, user.sources)
    )


def served_model(settings: Settings, words: UserOptions) -> tuple[str | None, str | None]:
    """The model the server gets (the user's own --model-path wins over SGLANG_MODEL, as in
    SGLang's parser: the last word wins) and its revision (the user's --revision)."""
    in_args = words.last(MODEL_PATH)
    model = in_args.value if in_args is not None and in_args.value else settings.model
    if not model:
        return None, None
    revision = words.last(REVISION)
    return model, revision.value if revision is not None else None


def build_plan(
    settings: Settings,
    user: UserArgs,
    gpus: GpuInventory,
    model_info: ModelInfo | None,
    table: OptionTable,
    base_env: dict[str, str],
    notes: tuple[str, ...] = (),
    table_why: str = "",
    threads: ThreadCaps | None = None,
    words: UserOptions | None = None,
) -> LaunchPlan:
    """Decide the server's argv and environment. Pure: no I/O, no environment reads.
    `threads`: the thread pool caps for the host's limits (host_limits.thread_caps);
    `words`: `read_words` of these settings, args and table, when the caller has it."""
    command = list(settings.sglang_command_words)
    user_opts = words if words is not None else read_words(settings, user, table)
    b = _Builder(user_opts, warnings=list(notes))
    b.warnings += list(gpus.warnings)
    b.warnings += user_opts.scan.problems
    model_source = "SGLANG_MODEL" if base_env.get("SGLANG_MODEL", "").strip() else "MODEL_NAME"
    model = _model(settings.model, model_source, user_opts, command, b)
    about: dict[str, Any] = {
        "option_table": table.source,
        "option_table_version": table.version,
        "option_table_why": table_why,
        "args_file": user.args_file,
    }
    if model is None:
        return LaunchPlan(
            [],
            dict(base_env),
            settings.workspace,
            SERVE_HOST,
            SERVE_PORT,
            None,
            b.decisions,
            _unique(b.warnings + user_opts.problems),
            gpus,
            model_info,
            **about,
        )
    _, revision = served_model(settings, user_opts)
    cut = "--" in user.tokens  # SGLang's argparse reads no option after a bare `--`
    # Always the literal --model-path: the one spelling every `sglang serve` finds (serve_cli).
    head = command + ([MODEL_PATH.canonical, model] if settings.model else [])
    host, port = _listen(settings, user_opts, b)
    nnodes, node_rank = _multi_node(discover_ranks(settings), user_opts, b)
    _parallel(settings, user_opts, gpus, model_info, b, nnodes)
    env = dict(base_env)
    env.update(SGLANG_MODEL=model, MODEL_NAME=model, HOME=str(settings.workspace))
    env.update(cache_env(settings.workspace, env))  # JIT caches on the volume
    env.update(_hub_dirs(settings, env))
    if threads is not None and threads.capped:
        env.update(threads.env)
        shown = " ".join(f"{k}={v}" for k, v in threads.env.items()) or "yours"
        b.decide("thread pools", shown, "host limits", threads.why)
    return LaunchPlan(
        head + user.tokens + b.additions,
        env,
        settings.workspace,
        host,
        port,
        model,
        b.decisions,
        _unique(b.warnings + user_opts.problems),
        gpus,
        model_info,
        **about,
        node_rank=node_rank,
        revision=revision,
        tp=_final_size(user_opts, b, TP, cut),
        pp=_final_size(user_opts, b, PP, cut),
    )


def _final_size(user: UserOptions, b: _Builder, known: Known, cut: bool) -> int:
    """The size SGLang reads for a parallelism option: the launcher's when it added one
    (after the user's words, so it is the last occurrence), else the user's; 1 when unset
    or not a positive whole number. `cut`: the user's words hold a bare `--`, after which
    SGLang's argparse reads no option, so the launcher's additions do not count."""
    value = b.added.get(known) if not cut else None
    if value is None:
        occ = user.last(known)
        value = occ.value if occ is not None else None
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        return 1


CHANGED_ENV = ("HF_HOME", "HF_HUB_CACHE", *POOL_VARIABLES)
"""Variables of the server's environment that `plan --json` shows when the launcher set them."""


def _hub_dirs(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """HF_HOME / HF_HUB_CACHE as the settings read them (a relative one made absolute
    against WORKSPACE), so that the server uses the cache the prefetch filled."""
    found = {}
    for var, value in (("HF_HOME", settings.hf_home), ("HF_HUB_CACHE", settings.hf_hub_cache)):
        if value is not None and env.get(var) is not None:
            found[var] = str(value)
    return found


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _model(
    configured: str | None, source: str, user: UserOptions, command: list[str], b: _Builder
) -> str | None:
    in_args = user.last(MODEL_PATH)
    if configured is None:
        if in_args is None or in_args.value is None:
            return None
        b.decide(
            "model",
            in_args.value,
            in_args.source,
            "SGLANG_MODEL is not set; the model comes from the user's own --model-path",
        )
        written = in_args.written.split("=")[0]
        spellings = model_spellings(user.table.version)
        if is_serve(command) and written not in spellings:
            b.warnings.append(
                f"{in_args.source}: `sglang serve` of SGLang {user.table.version} finds the "
                f"model only when it is written as {' or '.join(spellings)}, not {written}"
            )
        return in_args.value
    b.decide(MODEL_PATH.canonical, configured, source, "the model to serve")
    if in_args is not None and in_args.value != configured:
        b.warnings.append(
            f"{in_args.source} sets {in_args.written.split('=')[0]} "
            f"{in_args.value}, which overrides {source}={configured}"
        )
        return in_args.value or configured
    return configured


def _listen(settings: Settings, user: UserOptions, b: _Builder) -> tuple[str, int]:
    """--host/--port: the user's when given (then probed there), else the image's own."""
    host_occ, port_occ = user.last(HOST), user.last(PORT)
    if host_occ is None:
        host = settings.sglang_host
        b.add(
            HOST,
            host,
            "SGLANG_HOST" if host != SERVE_HOST else "default",
            "the auth proxy publishes the server from this address",
        )
    else:
        host = host_occ.value or SERVE_HOST
        b.decide("host", host, host_occ.source, "set by the user; probed there")
        if host != SERVE_HOST:
            b.warnings.append(
                f"{host_occ.source} sets --host {host}; the image expects "
                f"{SERVE_HOST} (the auth proxy publishes it; other addresses "
                "may expose the API without authentication)"
            )
    if port_occ is None:
        port = settings.sglang_port
        b.add(
            PORT,
            port,
            "LAUNCHER_SERVER_PORT" if port != SERVE_PORT else "default",
            "the auth proxy publishes this port as 8000",
        )
    else:
        try:
            port = int(port_occ.value or "")
        except ValueError:
            b.warnings.append(f"{port_occ.source}: --port {port_occ.value!r} is not a number")
            port = settings.sglang_port
        b.decide("port", port, port_occ.source, "set by the user; probed there")
        if port != settings.sglang_port:
            b.warnings.append(
                f"{port_occ.source} sets --port {port}; the auth proxy publishes "
                f"{settings.sglang_port} (LAUNCHER_SERVER_PORT), so the API on 8000 will not "
                "reach the server"
            )
    return reachable_host(host), port


def _multi_node(ranks: Ranks, user: UserOptions, b: _Builder) -> tuple[int, int]:
    """Add the multi-node options the user did not give; (nnodes, this node's rank)."""
    b.warnings += ranks.warnings
    nnodes, rank = int(str(ranks.nnodes.value)), int(str(ranks.node_rank.value))
    users_rank = user.last(NODE_RANK)
    if users_rank is not None and users_rank.value is not None and users_rank.value.isdigit():
        rank = int(users_rank.value)
    if nnodes <= 1:
        return nnodes, rank
    src = ranks.nnodes.source
    why = f"{src}={nnodes}: one model served by several machines"
    if ranks.orchestrator:
        why += f" (started by {ranks.orchestrator})"
    if not user.has(NNODES):
        b.add(NNODES, nnodes, src, why)
    if users_rank is None:
        b.add(NODE_RANK, rank, ranks.node_rank.source, "this machine's rank (0 serves the API)")
    if not user.has(DIST_INIT_ADDR):
        if ranks.dist_init_addr is not None:
            b.add(
                DIST_INIT_ADDR,
                ranks.dist_init_addr.value,
                ranks.dist_init_addr.source,
                "where the nodes meet (the head node)",
            )
        else:
            b.warnings.append(
                f"{src}={nnodes} but SGLANG_DIST_INIT_ADDR is "
                "not set: set it to host:port of node 0 or SGLang cannot start"
            )
    return nnodes, rank


def _int_of(user: UserOptions, known: Known, b: _Builder, optional: bool = False) -> int | None:
    """The user's whole number for ``known``; ``optional``: an option only some releases have."""
    occ = user.last_if_known(known) if optional else user.last(known)
    if occ is None:
        return None
    try:
        return int(occ.value or "")
    except ValueError:
        b.warnings.append(f"{occ.source}: {occ.written} {occ.value!r} is not a whole number")
        return None


def tp_fits(tp: int, info: ModelInfo | None) -> bool:
    """Whether SGLang can shard the model's attention heads over ``tp`` ranks."""
    if info is None or info.heads is None:
        return True
    if info.heads % tp:
        return False
    kv = info.kv_heads or info.heads
    return kv % tp == 0 if kv >= tp else tp % kv == 0


def _heads_text(info: ModelInfo | None) -> str:
    if info is None or info.heads is None:
        return "heads unknown"
    return f"{info.heads} attention heads, {info.kv_heads} kv heads"


def _usable_gpus(user: UserOptions, gpus: GpuInventory, b: _Builder) -> int:
    """GPUs SGLang will use on this node: --base-gpu-id and --gpu-id-step skip some."""
    base = _int_of(user, BASE_GPU_ID, b) or 0
    step = _int_of(user, GPU_ID_STEP, b) or 1
    if base == 0 and step == 1:
        return gpus.count
    usable = len(range(base, gpus.count, max(step, 1)))
    b.decide(
        "usable GPUs",
        usable,
        f"{BASE_GPU_ID}/{GPU_ID_STEP}",
        f"{gpus.count} visible, starting at {base} every {step}",
    )
    return usable


def _parallel(
    settings: Settings,
    user: UserOptions,
    gpus: GpuInventory,
    info: ModelInfo | None,
    b: _Builder,
    ranked_nnodes: int = 1,
) -> None:
    tp, dp, pp = (_int_of(user, known, b) for known in (TP, DP, PP))
    adp = attention_dp(user, dp, _int_of(user, ATTN_DP, b, optional=True))
    nnodes = _int_of(user, NNODES, b) or ranked_nnodes
    per_node = _usable_gpus(user, gpus, b)
    total = per_node * nnodes
    gpu_source = gpus.source if nnodes == 1 else f"{gpus.source} x SGLANG_NNODES"
    if adp is not None and user.last_if_known(ATTN_DP) is not None and (dp or 1) > 1:
        b.warnings.append(
            f"{DP} {dp} with {ATTN_DP} {adp.groups}: SGLang refuses data-parallel replicas "
            f"combined with attention data parallelism; drop {DP}"
        )
    if tp is not None:
        _check_user_tp(user, tp, dp or 1, pp or 1, nnodes, per_node, info, b, adp)
        return
    if not settings.auto_parallel:
        b.decide(
            "parallel layout",
            "SGLang defaults",
            "AUTO_PARALLEL",
            "AUTO_PARALLEL=false: the launcher adds no parallelism",
        )
        return
    if per_node == 0:
        b.warnings.append("no GPU visible: the launcher adds no tensor parallelism")
        return
    if info is None or info.heads is None:
        b.warnings.append(
            "the model's head counts are unknown: tensor parallelism over all "
            "GPUs is not checked against them"
        )
    if adp is not None:
        _dp_attention_layout(total, nnodes, pp or 1, adp, gpu_source, info, b)
        return
    if dp is None and pp is None:
        _auto_layout(total, nnodes, gpu_source, info, b)
        return
    # The user chose dp and/or pp: fill tp with the GPUs that are left.
    fixed = (dp or 1) * (pp or 1)
    room = total // fixed
    if room == 0 or total % fixed:
        b.warnings.append(f"dp*pp = {fixed} does not divide the {total} GPUs")
    if room == 0:
        return
    best = max(t for t in range(1, room + 1) if room % t == 0 and tp_fits(t, info))
    b.add(
        TP,
        best,
        gpu_source,
        f"the user set dp/pp ({fixed} groups); {total} GPUs leave tp={room}"
        + ("" if best == room else f", lowered to {best} for {_heads_text(info)}"),
    )
    if best != room:
        b.warnings.append(
            f"tp={best} leaves {total - best * fixed} of {total} GPUs idle: "
            f"{_heads_text(info)} do not divide by {room}"
        )


def _dp_attention_layout(
    total: int,
    nnodes: int,
    pp: int,
    adp: AttentionDp,
    source: str,
    info: ModelInfo | None,
    b: _Builder,
) -> None:
    """DP attention: the groups are inside tp, so tp spans the GPUs (see ``dp_attention``)."""
    room = total // pp
    sizes = attention_tp(room, nnodes, adp.groups, lambda t: tp_fits(t, info))
    if not sizes:
        b.warnings.append(
            f"{adp.spelled}: SGLang needs a tp divisible by the {adp.groups} attention groups, "
            f"and {room} GPUs{' per pipeline stage' if pp > 1 else ''} allow none that "
            f"{_heads_text(info)} also fit: the launcher adds no tp"
        )
        return
    best = sizes[0]
    b.add(
        TP,
        best,
        source,
        f"DP attention ({adp.spelled}): the {adp.groups} attention groups share the tensor "
        f"parallel group, so tp spans the GPUs and SGLang requires tp divisible by "
        f"{adp.groups}; {best // adp.groups} rank(s) per group"
        + ("" if pp == 1 else f"; pp={pp} stages"),
    )
    if best * pp != total:
        b.warnings.append(
            f"tp={best} x pp={pp} leaves {total - best * pp} of {total} GPUs idle: tp must be "
            f"a multiple of the {adp.groups} attention groups"
            + (f" and of the {nnodes} nodes" if nnodes > 1 else "")
            + ("" if best == room or info is None else f" that {_heads_text(info)} fit")
        )


def _auto_layout(total: int, nnodes: int, source: str, info: ModelInfo | None, b: _Builder) -> None:
    """Every GPU busy: the largest tp the heads allow, data parallel over the rest."""
    if tp_fits(total, info):
        if total > 1:
            b.add(
                TP,
                total,
                source,
                f"AUTO_PARALLEL: tensor parallel over all {total} GPUs ({_heads_text(info)})",
            )
        else:
            b.decide("parallel layout", "tp=1", source, "one GPU: nothing to spread")
        return
    if nnodes > 1:
        # Data parallelism does not span nodes here: keep tp a multiple of the node count.
        options = [
            t for t in range(nnodes, total + 1, nnodes) if total % t == 0 and tp_fits(t, info)
        ]
        if not options:
            b.warnings.append(f"no tp over {nnodes} nodes fits {_heads_text(info)}")
            return
        tp = max(options)
        b.add(TP, tp, source, f"{_heads_text(info)} do not divide by {total}")
        b.warnings.append(f"tp={tp} leaves {total - tp} of {total} GPUs idle across nodes")
        return
    tp = max(t for t in range(1, total + 1) if total % t == 0 and tp_fits(t, info))
    dp = total // tp
    why = f"{_heads_text(info)} do not divide by {total} GPUs"
    if tp > 1:
        b.add(TP, tp, source, f"{why}; {tp} is the largest tensor parallel size that does")
    else:
        b.decide(
            "tensor parallel",
            1,
            source,
            f"{why}, nor by any tensor parallel size above 1 that divides {total}: "
            "SGLang's default tp=1, each GPU serves a whole copy",
        )
    b.add(DP, dp, source, f"data parallel uses the other GPUs: {tp} x {dp} = {total}")


def _check_user_tp(
    user: UserOptions,
    tp: int,
    dp: int,
    pp: int,
    nnodes: int,
    per_node: int,
    info: ModelInfo | None,
    b: _Builder,
    adp: AttentionDp | None = None,
) -> None:
    occ = user.last(TP)
    assert occ is not None
    b.decide(
        "tensor parallel",
        tp,
        occ.source,
        f"set by the user as {occ.written.split('=')[0]}; the launcher never overrides it",
    )
    small = [f"{name}={size}" for name, size in (("tp", tp), ("pp", pp), ("dp", dp)) if size < 1]
    if small:
        # argparse's type=int takes them; no layout has fewer than one GPU per group
        b.warnings.append(
            f"{', '.join(small)}: a parallel size is at least 1, SGLang cannot lay out the "
            "GPUs with it; fix the value in SGLANG_ARGS or leave it to AUTO_PARALLEL"
        )
        return
    if adp is not None and tp % adp.groups:
        b.warnings.append(
            f"tp={tp} is not divisible by the {adp.groups} attention groups of {adp.spelled}: "
            f"SGLang stops at its check that tp_size divides by them; use a tp that is a "
            f"multiple of {adp.groups}, or leave tp to AUTO_PARALLEL"
        )
    dp_gpus = 1 if adp is not None or user.has(ENABLE_DP_ATTENTION) else dp
    need = tp * pp * dp_gpus
    total = per_node * nnodes
    if per_node and need > total:
        b.warnings.append(
            f"tp={tp} x pp={pp} x dp={dp_gpus} needs {need} GPUs but "
            f"{total} are visible"
            + (f" ({per_node} per node x {nnodes} nodes)" if nnodes > 1 else "")
        )
    elif per_node and need < total:
        hint = ""
        if not user.has(DP) and adp is None and total % need == 0:
            hint = f"; add {DP} {total // need} to serve with all of them"
        b.warnings.append(
            f"tp={tp} x pp={pp} x dp={dp_gpus} uses {need} of the {total} visible GPUs: "
            f"{total - need} stay idle{hint}"
        )
    if not tp_fits(tp, info) and info is not None:
        b.warnings.append(
            f"tp={tp} does not divide the model's {_heads_text(info)}: SGLang "
            "will fail after loading starts; choose a tp that divides them"
        )
