"""DP attention: the attention data-parallel groups live inside the tensor parallel group.

With DP attention SGLang runs ``tp`` ranks in all, split into groups that each run attention
on their own batch while the FFN/MoE stays tensor parallel over all of them; so tp spans the
GPUs and must be divisible by the number of groups, and the groups take no GPUs of their own.

- 0.5.6.post2 to 0.5.18: ``--dp-size N --enable-dp-attention`` (``server_args.py``
  ``_handle_data_parallelism``: ``assert self.tp_size % self.dp_size == 0``; from 0.5.10
  ``tp_size % (dp_size * attn_cp_size)``); with ``dp_size == 1`` the flag is turned off.
- 0.5.20: the same check moved to ``arg_groups/parallel_hook.py``.
- 0.5.22 and 0.5.23: ``--attn-dp-size N`` (``arg_groups/fields/parallel.py``
  ``Parallel.attn_dp_size``); ``--enable-dp-attention`` is a deprecated flag that
  ``parallel_hook.py`` ``handle_deprecated_dp_attention`` turns into ``attn_dp_size = dp_size``,
  ``dp_size = 1``; the check is ``tp_size % (attn_dp_size * attn_cp_size) == 0``, and
  ``--dp-size`` > 1 beside ``--attn-dp-size`` > 1 is a ValueError ("data-parallel replicas
  combined with attention data parallelism are not supported").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .known_options import ATTN_DP, DP, ENABLE_DP_ATTENTION
from .options import UserOptions


@dataclass(frozen=True)
class AttentionDp:
    """DP attention as the user asked for it: the number of groups and how it was spelled."""

    groups: int
    spelled: str


def attention_dp(user: UserOptions, dp: int | None, attn_dp: int | None) -> AttentionDp | None:
    """The user's DP attention, or None when it is off (one group is off in every release)."""
    if attn_dp is not None and attn_dp > 1:
        return AttentionDp(attn_dp, f"{ATTN_DP} {attn_dp}")
    if user.has(ENABLE_DP_ATTENTION) and dp is not None and dp > 1:
        return AttentionDp(dp, f"{DP} {dp} {ENABLE_DP_ATTENTION}")
    return None


def attention_tp(room: int, nnodes: int, groups: int, fits: Callable[[int], bool]) -> list[int]:
    """The tp sizes SGLang accepts with ``groups`` attention groups, largest first: multiples
    of ``groups`` (and of the node count) up to the ``room`` GPUs whose attention tp
    (tp / groups, the ranks that shard one group's heads) ``fits`` the model."""
    return [
        t for t in range(room, 0, -1) if t % groups == 0 and t % nnodes == 0 and fits(t // groups)
    ]
