"""Model metadata from a local dir, the HF cache, and a hub served on loopback (the real
huggingface_hub client against tests/fake_hub.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CHECKOUT, free_port, run_launcher
from fake_hub import FakeHub, Repo

from vast_sglang_launcher.hub import HubAccess
from vast_sglang_launcher.plan.model_info import parse_config, read_model_info

LLAMA = {"architectures": ["LlamaForCausalLM"], "num_attention_heads": 32, "num_key_value_heads": 8}
OFFLINE = HubAccess("http://127.0.0.1:9", None, 1.0, offline=True)


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """The loopback hub (tests/fake_hub.py): org/open (revisions main and v2), org/gated
    (token hf_secret) and org/moved, renamed to org/open."""
    config = json.dumps(LLAMA).encode()
    hub = FakeHub(
        {
            "org/open": Repo({"config.json": config}, revisions=("main", "v2")),
            "org/gated": Repo({"config.json": config}, gated=True),
        },
        token="hf_secret",
        moved={"org/moved": "org/open"},
    )
    yield hub
    hub.close()


@pytest.fixture
def hub_url(fake_hub: FakeHub) -> str:
    return fake_hub.url


def test_local_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    info, warning = read_model_info(str(tmp_path), None, tmp_path / "cache", OFFLINE)
    assert warning is None and info is not None
    assert (info.heads, info.kv_heads, info.architecture) == (32, 8, "LlamaForCausalLM")


def test_missing_local_directory_is_a_warning(tmp_path: Path) -> None:
    info, warning = read_model_info(str(tmp_path / "nope"), None, tmp_path, OFFLINE)
    assert info is None and warning and "does not exist" in warning


def test_multimodal_heads_are_under_text_config() -> None:
    cfg = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "vision_config": {"num_heads": 16},
        "text_config": {"num_attention_heads": 28, "num_key_value_heads": 4},
    }
    info = parse_config(cfg, "t")
    assert (info.heads, info.kv_heads) == (28, 4)
    info = parse_config({"llm_config": {"num_attention_heads": 40}}, "t")
    assert (info.heads, info.kv_heads) == (40, 40)  # no kv count: one kv head per head


def test_hf_cache_snapshot_of_main(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--open"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(LLAMA))
    info, warning = read_model_info("org/open", None, tmp_path / "hub", OFFLINE)
    assert warning is None and info is not None and info.heads == 32
    assert "HF cache" in info.source


def test_offline_and_not_cached_is_a_warning(tmp_path: Path) -> None:
    info, warning = read_model_info("org/open", None, tmp_path, OFFLINE)
    assert info is None and warning and "HF_HUB_OFFLINE" in warning


def test_hub_with_redirect(tmp_path: Path, hub_url: str) -> None:
    info, warning = read_model_info("org/moved", None, tmp_path, HubAccess(hub_url, None, 2.0))
    assert warning is None and info is not None and info.kv_heads == 8


def test_gated_model_needs_the_token(tmp_path: Path, hub_url: str) -> None:
    info, warning = read_model_info("org/gated", None, tmp_path, HubAccess(hub_url, None, 2.0))
    assert info is None and warning and "set HF_TOKEN" in warning
    info, warning = read_model_info(
        "org/gated", None, tmp_path, HubAccess(hub_url, "hf_secret", 2.0)
    )
    assert info is not None and info.heads == 32


def test_revision_is_asked_for(tmp_path: Path, fake_hub: FakeHub) -> None:
    read_model_info("org/open", "v2", tmp_path, HubAccess(fake_hub.url, None, 2.0))
    assert fake_hub.requests[0][1] == "/org/open/resolve/v2/config.json"


def test_unreachable_hub_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    info, warning = read_model_info(
        "org/x", None, tmp_path, HubAccess("http://127.0.0.1:9", None, 0.5)
    )
    assert info is None and warning and "cannot fetch" in warning


# --- `plan` without the hub: one line naming the cause, never the client's own lines ---------
# (the suite runs in a private network namespace, tests/conftest.py: no DNS query leaves)


def plan_stderr(tmp_path: Path, endpoint: str, model: str, **env: str) -> str:
    done = run_launcher(
        "plan",
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": CHECKOUT,
            "HF_HOME": str(tmp_path / "hf"),
            "HF_ENDPOINT": endpoint,
            "SGLANG_MODEL": model,
            "SGLANG_ARGS_FILE": str(tmp_path / "sglang-args.conf"),
            "WORKSPACE": str(tmp_path / "ws"),
            "GPU_COUNT": "8",
            **env,
        },
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sglang serve --model-path ")
    assert "--tp-size 8" in done.stdout  # heads unknown: all GPUs, and said so
    # huggingface_hub's own retry lines (utils/_http.py, _http_backoff_base) never show
    output = done.stdout + done.stderr
    for line in ("thrown while requesting", "Retrying in", "Traceback"):
        assert line not in output, output
    warnings = [w for w in output.splitlines() if "heads not checked" in w]
    assert len(warnings) == 1, output
    assert warnings[0].startswith("warning: ")
    return warnings[0]


def test_plan_with_the_hub_refusing_names_the_refusal(tmp_path: Path) -> None:
    warning = plan_stderr(tmp_path, f"http://127.0.0.1:{free_port()}", "org/m")
    assert "/org/m/resolve/main/config.json: connection refused: heads not checked" in warning


def test_plan_without_dns_names_the_name_lookup(tmp_path: Path) -> None:
    warning = plan_stderr(tmp_path, "https://hub.example.invalid", "org/m")
    assert "the hub's name does not resolve (no network or no DNS" in warning


def test_plan_with_a_silent_hub_names_the_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        warning = plan_stderr(
            tmp_path,
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            "org/m",
            LAUNCHER_MODEL_INFO_TIMEOUT="1",
        )
    assert "no answer within 1 s (LAUNCHER_MODEL_INFO_TIMEOUT): heads not checked" in warning


def test_plan_of_a_gated_model_names_the_401(tmp_path: Path, hub_url: str) -> None:
    warning = plan_stderr(tmp_path, hub_url, "org/gated")
    assert "org/gated config.json answered 401 (gated or private model?): set HF_TOKEN" in warning


def test_plan_of_an_unknown_model_names_the_404(tmp_path: Path, hub_url: str) -> None:
    warning = plan_stderr(tmp_path, hub_url, "org/none")
    assert "answered 404: org/none does not exist on the hub (HTTP 404)" in warning
