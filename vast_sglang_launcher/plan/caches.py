"""JIT and compile caches on the workspace (the persistent volume), so that kernels compiled
on one start are reused by the next instead of costing minutes again.

Pure. Each variable is set only when the user has not set it. Names as the libraries read
them: Triton (`TRITON_CACHE_DIR`), PyTorch Inductor (`TORCHINDUCTOR_CACHE_DIR`, whose default
is under /tmp), FlashInfer (`FLASHINFER_WORKSPACE_BASE`: its JIT cache is
`<base>/.cache/flashinfer`), DeepGEMM through SGLang (`SGLANG_DG_CACHE_DIR`), SGLang's own
cache (`SGLANG_CACHE_DIR`) and the CUDA driver's compute cache (`CUDA_CACHE_PATH`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CACHES: tuple[tuple[str, str], ...] = (
    ("TRITON_CACHE_DIR", ".cache/triton"),
    ("TORCHINDUCTOR_CACHE_DIR", ".cache/torchinductor"),
    ("FLASHINFER_WORKSPACE_BASE", ""),
    ("SGLANG_DG_CACHE_DIR", ".cache/deep_gemm"),
    ("SGLANG_CACHE_DIR", ".cache/sglang"),
    ("CUDA_CACHE_PATH", ".nv/ComputeCache"),
)
"""(variable, path under $WORKSPACE)."""


def cache_env(workspace: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The cache variables to add to the server's environment: every one of CACHES that
    `env` does not set (an empty value counts as unset), pointing under `workspace`."""
    return {
        name: str(workspace / sub) if sub else str(workspace)
        for name, sub in CACHES
        if not env.get(name, "").strip()
    }
