"""The image's capability fragment (docker/vast_capabilities.d/), read the way Vast's Instance
Portal reads it.

The portal's reader (vast-ai/base-image `portal-aio/capabilities/manifest.py`) is not
published as a package, so the steps it takes are restated here, each where the portal takes
it: `load_fragments` yaml.safe_load's every `*.yaml` of the directory in sorted order and
keeps a fragment only when it is a mapping, concatenating `tools` and `openai_endpoints`,
merging `python_environments` by `name` and `image` key by key; `_read_portal_yaml` reads
the services from /etc/portal.yaml (`applications`, each `name` falling back to its key);
`assemble` gives a service the endpoint whose `service` equals the service's name, with
`internal_base_url = http://localhost:<internal_port><path without a trailing />`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vast_sglang_launcher.edge.portal import portal_entries, portal_yaml_text
from vast_sglang_launcher.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
FRAGMENTS = ROOT / "docker" / "vast_capabilities.d"
VAST_TEMPLATE = (
    "localhost:1111:11111:/:Instance Portal|localhost:7860:17860:/:Model UI"
    "|localhost:8000:18000:/docs:SGLang API|localhost:8080:18080:/:Jupyter"
    "|localhost:8080:8080:/terminals/1:Jupyter Terminal"
)


def load_fragments(directory: Path) -> dict[str, Any]:
    """manifest.py `load_fragments`, for the keys it merges."""
    merged: dict[str, Any] = {"tools": [], "python_environments": [], "openai_endpoints": []}
    merged["image"] = {}
    envs: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        frag = yaml.safe_load(path.read_text()) or {}
        assert isinstance(frag, dict), (
            f"{path.name}: the portal skips a fragment that is no mapping"
        )
        if isinstance(frag.get("image"), dict):
            merged["image"].update(frag["image"])
        merged["tools"] += frag.get("tools", []) or []
        merged["openai_endpoints"] += frag.get("openai_endpoints", []) or []
        for env in frag.get("python_environments", []) or []:
            name = env.get("name") or env.get("path")
            assert name, f"{path.name}: the portal drops an environment without name or path"
            envs.setdefault(name, {}).update(env)
    merged["python_environments"] = list(envs.values())
    return merged


def services(portal_yaml: str) -> list[dict[str, Any]]:
    """manifest.py `_read_portal_yaml`."""
    apps = (yaml.safe_load(portal_yaml) or {}).get("applications", {}) or {}
    return [
        {
            "name": app.get("name", name),
            "internal_port": app.get("internal_port"),
            "external_port": app.get("external_port"),
        }
        for name, app in apps.items()
    ]


def endpoints(fragments: dict[str, Any], svcs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """manifest.py `assemble`: the `endpoints_openai` rollup (its internal part)."""
    hints = {e.get("service"): e for e in fragments["openai_endpoints"] if e.get("service")}
    rollup = []
    for svc in svcs:
        hint = hints.get(svc["name"])
        if hint:
            base = hint.get("path", "/v1").rstrip("/")
            rollup.append(
                {
                    "service": svc["name"],
                    "internal_base_url": f"http://localhost:{svc['internal_port']}{base}",
                    "capabilities": hint.get("capabilities", []),
                    "models_path": hint.get("models_path"),
                }
            )
    return rollup


def test_the_fragment_is_what_the_portal_merges() -> None:
    assert [p.name for p in FRAGMENTS.iterdir()] == ["30-sglang.yaml"]
    fragments = load_fragments(FRAGMENTS)
    assert fragments["image"]["name"].startswith("SGLang")
    # present, so the portal does not fill in vast-ai/base-image as this image's source
    assert "repo" in fragments["image"]
    assert {t["name"] for t in fragments["tools"]} >= {"sglang", "vast-sglang-launcher", "jupyter"}
    assert all(isinstance(t.get("description"), str) for t in fragments["tools"])
    envs = {e["name"]: e for e in fragments["python_environments"]}
    assert envs["jupyter"]["path"] == "/opt/jupyter/venv"
    assert envs["launcher"]["path"] == "/opt/vast-sglang-launcher/venv"


@pytest.mark.parametrize("config", [None, VAST_TEMPLATE], ids=["default", "vast-template"])
def test_the_sglang_api_service_gets_the_openai_endpoint(config: str | None) -> None:
    settings = load_settings({"PORTAL_CONFIG": config} if config else {})
    entries = portal_entries(settings)
    rollup = endpoints(load_fragments(FRAGMENTS), services(portal_yaml_text(entries)))
    assert rollup == [
        {
            "service": "SGLang API",
            # where the launcher makes SGLang listen (SGLANG_PORT)
            "internal_base_url": f"http://localhost:{settings.sglang_port}/v1",
            "capabilities": [
                "chat",
                "completions",
                "embeddings",
                "models",
                "responses",
                "rerank",
                "score",
                "classify",
                "tokenize",
                "detokenize",
            ],
            "models_path": "/v1/models",
        }
    ]


def test_the_dockerfile_installs_the_fragment_where_the_portal_reads_it() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(
        r"^COPY docker/vast_capabilities\.d/ /etc/vast_capabilities\.d/$", text, re.M
    ), "the Dockerfile does not install docker/vast_capabilities.d/"
