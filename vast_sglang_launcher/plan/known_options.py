"""The SGLang options the launcher reads or adds, named by their option strings.

SGLang renames dests between releases (0.5.14: ``tensor_parallel_size`` became ``tp_size``)
but keeps the option strings, so an option is named here by a canonical spelling and its
known aliases, and each loaded table says which dest that release gives it
(``options.OptionTable.resolve``). No dest name is written in the planning code.

Standard library only: the drift check (`option-table --check`) imports this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    """One option the launcher reasons about: the spelling it writes, then its aliases."""

    canonical: str
    aliases: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.canonical, *self.aliases)

    def __str__(self) -> str:
        return self.canonical


MODEL_PATH = Known("--model-path", ("--model",))
REVISION = Known("--revision")
TP = Known("--tp-size", ("--tensor-parallel-size",))
DP = Known("--dp-size", ("--data-parallel-size",))
PP = Known("--pp-size", ("--pipeline-parallel-size",))
ENABLE_DP_ATTENTION = Known("--enable-dp-attention")
# 0.5.22+ (arg_groups/fields/parallel.py, Parallel.attn_dp_size); not in USED: older
# releases lack it, and there `--dp-size N --enable-dp-attention` is the only spelling.
ATTN_DP = Known("--attn-dp-size", ("--attention-data-parallel-size",))
HOST = Known("--host")
PORT = Known("--port")
NNODES = Known("--nnodes")
NODE_RANK = Known("--node-rank")
DIST_INIT_ADDR = Known("--dist-init-addr", ("--nccl-init-addr",))
BASE_GPU_ID = Known("--base-gpu-id")
GPU_ID_STEP = Known("--gpu-id-step")

USED: tuple[Known, ...] = (
    MODEL_PATH,
    REVISION,
    TP,
    DP,
    PP,
    ENABLE_DP_ATTENTION,
    HOST,
    PORT,
    NNODES,
    NODE_RANK,
    DIST_INIT_ADDR,
    BASE_GPU_ID,
    GPU_ID_STEP,
)
"""Every option the plan reads or adds: what the drift check requires of a table."""
