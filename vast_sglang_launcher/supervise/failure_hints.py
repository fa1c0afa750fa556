"""Explain a server failure from its last output lines: the well-known causes and their fixes."""

from __future__ import annotations

import re
from collections.abc import Sequence

# (pattern, hint) in priority order: the first rule matching any line wins.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"unrecognized arguments:|ambiguous option:|error: argument |invalid choice"),
        "SGLang rejected an argument: check SGLANG_ARGS and the args file (SGLANG_ARGS_FILE); "
        "`vast-sglang-launcher plan` shows the command and where each part came from",
    ),
    (
        re.compile(
            r"GatedRepoError|gated repo|Access to model .* is restricted|"
            r"You must have access to it|401 Client Error",
            re.IGNORECASE,
        ),
        "the model is gated: accept its license on its Hugging Face page and set HF_TOKEN to a "
        "token of that account",
    ),
    (
        re.compile(r"RepositoryNotFoundError|Repository Not Found|404 Client Error", re.I),
        "the model was not found on the Hugging Face hub: check the spelling of SGLANG_MODEL "
        "(a private repository also needs HF_TOKEN)",
    ),
    (
        re.compile(
            r"OutOfMemoryError|out of memory|Not enough memory|CUDA error: out of memory", re.I
        ),
        "the GPU ran out of memory: lower --mem-fraction-static or --context-length, serve a "
        "smaller or quantized model, or spread it over more GPUs (--tp)",
    ),
    (
        re.compile(
            r"divisible by|total_num_(kv_)?heads|num_(key_value|attention)_heads.*%|"
            r"%\s*(self\.)?tp_size",
            re.IGNORECASE,
        ),
        "the tensor-parallel size does not divide the model's attention heads (or KV heads): "
        "choose a --tp that divides them, or set AUTO_PARALLEL=false and pick the layout",
    ),
    (
        re.compile(r"address already in use|is already in use", re.IGNORECASE),
        "another process holds the server's port: stop it, or choose another SGLANG_PORT",
    ),
    (
        re.compile(r"No CUDA GPUs are available|Found no NVIDIA driver|CUDA driver", re.I),
        "the server sees no GPU: check that the instance has GPUs and CUDA_VISIBLE_DEVICES",
    ),
    (
        re.compile(r"No space left on device", re.IGNORECASE),
        "the disk is full: free space in $WORKSPACE (the model cache) or rent more disk",
    ),
]


def hint_for(lines: Sequence[str], returncode: int | None, hf_token_set: bool = False) -> str:
    """One sentence telling the likely cause and fix, or an empty string."""
    for pattern, hint in _RULES:
        if any(pattern.search(line) for line in lines):
            if hint.startswith("the model is gated") and hf_token_set:
                return (
                    "the model is gated and HF_TOKEN was refused: accept the model's license "
                    "with the token's account, or check that the token is valid"
                )
            return hint
    if returncode == 2:
        return "exit status 2 is an argument error: check SGLANG_ARGS and SGLANG_ARGS_FILE"
    if returncode == -9:
        return (
            "SGLang kills its whole process tree with SIGKILL when a worker fails: the cause "
            "is in the server lines above (none: maybe the kernel's out-of-memory killer)"
        )
    return ""
