"""Which files of a hub repo SGLang loads: weights, config, tokenizer and generation files.

Pure. Safetensors weights when the repo has any (then `.bin`/`.pth`/`.pt` duplicates are
skipped), else the PyTorch weights; every JSON, the tokenizer files, chat templates and the
Python files of `trust_remote_code` models. Not fetched: READMEs, images, other frameworks'
weights (ONNX, Flax, TensorFlow, GGUF) and the `original/` checkpoints some repos carry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

SAFETENSORS = ("*.safetensors",)
PYTORCH = ("*.bin", "*.pth", "*.pt")
ALWAYS = (
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "vocab*",
    "merges.txt",
    "added_tokens*",
    "*.jinja",
    "*.py",
)
NEVER_DIRS = ("original/",)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _consolidated(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith("consolidated")


def choose(paths: Iterable[str]) -> list[str]:
    """The files to fetch, in the repo's order."""
    files = [p for p in paths if not p.startswith(NEVER_DIRS)]
    has_safetensors = any(_matches(p, SAFETENSORS) for p in files)
    weights = SAFETENSORS if has_safetensors else PYTORCH
    sharded = any(_matches(p, SAFETENSORS) and not _consolidated(p) for p in files)
    chosen = []
    for p in files:
        if _matches(p, weights):
            if sharded and _consolidated(p):
                continue  # Mistral's single-file duplicate of the sharded checkpoint
            chosen.append(p)
        elif _matches(p, ALWAYS) and not (has_safetensors and p.endswith(".bin.index.json")):
            chosen.append(p)
    return chosen


def weight_bytes(sizes: dict[str, int]) -> int:
    """Bytes of the weight files among `sizes` (path -> size), as `choose` picks them."""
    chosen = set(choose(sizes))
    return sum(
        size for p, size in sizes.items() if p in chosen and _matches(p, SAFETENSORS + PYTORCH)
    )
