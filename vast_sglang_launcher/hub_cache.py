"""The HF cache as the launcher reads it without the network: the launcher's record of
complete downloads (`$HF_HUB_CACHE/../vast-sglang-launcher/prefetch/*.json`) and the
snapshots' directories.

The prefetch writes a record when a download completes; the prefetch's skip check and the
plan's weight size read it. The layout (`models--org--name/refs`, `snapshots/<commit>`) is
huggingface_hub's: 2.4.0 `constants.py` (REPO_ID_SEPARATOR "--") and `file_download.py`
(`repo_folder_name`, `_cache_commit_hash_for_specific_revision`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomic


@dataclass(frozen=True)
class Manifest:
    """What one complete prefetch fetched: the commit and each file's size."""

    repo: str
    revision: str
    commit: str
    files: dict[str, int]


def repo_dir(hub_cache: Path, repo: str) -> Path:
    return hub_cache / ("models--" + repo.replace("/", "--"))


def manifest_path(hub_cache: Path, repo: str, revision: str) -> Path:
    name = f"{repo.replace('/', '--')}@{revision.replace('/', '--')}.json"
    return hub_cache.parent / "vast-sglang-launcher" / "prefetch" / name


def save_manifest(hub_cache: Path, m: Manifest) -> None:
    doc = {"repo": m.repo, "revision": m.revision, "commit": m.commit, "files": m.files}
    write_atomic(manifest_path(hub_cache, m.repo, m.revision), json.dumps(doc, indent=1) + "\n")


def snapshot_dir(hub_cache: Path, repo: str, commit: str) -> Path:
    return repo_dir(hub_cache, repo) / "snapshots" / commit


def complete_in_cache(hub_cache: Path, repo: str, revision: str) -> Manifest | None:
    """The manifest of a complete earlier prefetch whose files are all still in the cache
    with their sizes (and whose ref still names its commit); None otherwise. No network."""
    try:
        doc = json.loads(manifest_path(hub_cache, repo, revision).read_text())
        m = Manifest(doc["repo"], doc["revision"], doc["commit"], dict(doc["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ref = repo_dir(hub_cache, repo) / "refs" / revision
    if revision != m.commit:
        try:
            if ref.read_text().strip() != m.commit:
                return None
        except OSError:
            return None
    snap = snapshot_dir(hub_cache, repo, m.commit)
    for path, size in m.files.items():
        try:
            if (snap / path).stat().st_size != size:
                return None
        except OSError:
            return None
    return m


def any_snapshot_config(hub_cache: Path, repo: str) -> Path | None:
    """The newest config.json of any cached snapshot (offline, when refs do not say)."""
    snapshots = repo_dir(hub_cache, repo) / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
