"""The model's attention layout from its config.json: a local dir, the HF cache, or the hub.

Knowing the head counts before launching lets the plan pick a tensor-parallel size SGLang can
actually use, instead of crashing a scheduler after minutes of loading. Missing metadata is a
warning, never a failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class HubAccess:
    endpoint: str
    token: str | None
    timeout: float
    offline: bool = False


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
    """Find and parse config.json; returns (info, None) or (None, a warning saying why not)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return _from_file(local / "config.json", f"{local}/config.json")
    if model.startswith(("/", ".", "~")):
        return None, f"model directory {model} does not exist (yet): heads not checked"
    cached = _cached_config(hub_cache, model, revision)
    if cached is not None:
        return _from_file(cached, f"HF cache {cached}")
    if hub.offline:
        return None, f"{model} is not in the HF cache and HF_HUB_OFFLINE is set: heads not checked"
    return _from_hub(model, revision or "main", hub)


def _from_file(path: Path, source: str) -> tuple[ModelInfo | None, str | None]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}: heads not checked"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object: heads not checked"
    return parse_config(data, source), None


def _cached_config(hub_cache: Path, repo: str, revision: str | None) -> Path | None:
    """config.json of a repo in the HF cache: the snapshot of the revision's ref, else any."""
    root = hub_cache / ("models--" + repo.replace("/", "--"))
    snapshots = root / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = root / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    if commit and (snapshots / commit / "config.json").is_file():
        return snapshots / commit / "config.json"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _from_hub(repo: str, revision: str, hub: HubAccess) -> tuple[ModelInfo | None, str | None]:
    import httpx

    url = f"{hub.endpoint.rstrip('/')}/{repo}/resolve/{revision}/config.json"
    headers = {"Authorization": f"Bearer {hub.token}"} if hub.token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=hub.timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return None, f"cannot fetch {url}: {type(exc).__name__}: heads not checked"
    if response.status_code in (401, 403):
        hint = "set HF_TOKEN" if not hub.token else "check that HF_TOKEN has access"
        return None, (
            f"{repo} config.json answered {response.status_code} (gated or private model?): "
            f"{hint}; heads not checked"
        )
    if response.status_code != 200:
        return None, f"{url} answered {response.status_code}: heads not checked"
    try:
        data = response.json()
    except ValueError:
        return None, f"{url} is not JSON: heads not checked"
    if not isinstance(data, dict):
        return None, f"{url} is not a JSON object: heads not checked"
    return parse_config(data, f"hub {hub.endpoint.rstrip('/')}/{repo}@{revision}"), None
