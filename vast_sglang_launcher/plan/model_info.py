"""The model's attention layout from its config.json: a local dir, the HF cache, or the hub
(through `huggingface_hub`, see the shared `hub`).

Knowing the head counts before launching lets the plan pick a tensor-parallel size SGLang can
actually use, instead of crashing a scheduler after minutes of loading. Missing metadata is a
warning, never a failure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..hub import HubAccess, fetch_config, read_config

_NESTED = ("text_config", "llm_config", "language_config", "thinker_config")
_HEADS = ("num_attention_heads", "n_head", "num_heads")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")


@dataclass(frozen=True)
class ModelInfo:
    heads: int | None
    kv_heads: int | None
    architecture: str | None
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_config(config: dict[str, Any], source: str) -> ModelInfo:
    """Head counts from a config.json, looking inside a multimodal model's text config."""
    section = config
    if not any(k in config for k in _HEADS):
        for key in _NESTED:
            nested = config.get(key)
            if isinstance(nested, dict) and any(k in nested for k in _HEADS):
                section = nested
                break
    heads = _first_int(section, _HEADS)
    kv = _first_int(section, _KV_HEADS)
    archs = config.get("architectures") or section.get("architectures")
    arch = str(archs[0]) if isinstance(archs, list) and archs else None
    return ModelInfo(heads, kv if kv is not None else heads, arch, source)


def _first_int(section: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = section.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def read_model_info(
    model: str, revision: str | None, hub_cache: Path, hub: HubAccess
) -> tuple[ModelInfo | None, str | None]:
    """Find and parse config.json; returns (info, None) or (None, a warning saying why not).

    A local directory is read directly; a hub repo goes through `hub.fetch_config`
    (the HF cache first, then the hub unless HF_HUB_OFFLINE is set)."""
    local = Path(model).expanduser()
    if local.is_dir():
        config, source, warning = read_config(local / "config.json", f"{local}/config.json")
        return (parse_config(config, source), None) if config is not None else (None, warning)
    if model.startswith(("/", ".", "~")):
        return None, f"model directory {model} does not exist (yet): heads not checked"
    config, source, warning = fetch_config(model, revision, hub_cache, hub)
    if config is None:
        return None, warning
    return parse_config(config, source), None
