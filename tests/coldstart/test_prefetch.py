"""The weight prefetch with the real huggingface_hub client against the loopback hub
(tests/fake_hub.py), through the real CLI: `provision`, `entrypoint` and `run`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import LauncherRig, free_port, proc_gone
from fake_hub import FakeHub

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO_ROOT = Path(__file__).resolve().parents[2]


def hub_env(rig: LauncherRig, hub: FakeHub, model: str = "org/tiny", **more: str) -> dict[str, str]:
    """`rig.env` pointed at the fake hub, with a hub repo as the model."""
    return {
        "SGLANG_MODEL": model,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # The launcher under test, also in a worktree that another checkout is installed from.
        "PYTHONPATH": str(REPO_ROOT),
        **more,
    }


def snapshot(rig: LauncherRig, repo: str = "org/tiny") -> Path:
    folder = "models--" + repo.replace("/", "--")
    return rig.workspace / ".cache" / "huggingface" / "hub" / folder / "snapshots" / SHA


def prefetch_status(rig: LauncherRig) -> dict[str, Any]:
    return dict(json.loads((rig.run_dir / "prefetch.json").read_text()))


def test_provision_downloads_what_sglang_loads_and_a_second_boot_asks_nothing(
    rig: LauncherRig, hub: FakeHub
) -> None:
    env = hub_env(rig, hub)
    done = rig.cli("provision", **env)
    assert done.returncode == 0, done.stderr
    assert "prefetch: ok (downloaded 4.0 MiB" in done.stdout
    files = sorted(p.name for p in snapshot(rig).iterdir())
    assert files == [
        "config.json",
        "generation_config.json",
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert not any(".bin" in p for p in hub.file_gets())
    assert sum(p.endswith(".safetensors") for p in hub.file_gets()) == 3
    status = prefetch_status(rig)
    assert status["state"] == "done" and status["total_bytes"] == status["done_bytes"]

    hub.requests.clear()
    again = rig.cli("provision", **env)
    assert again.returncode == 0, again.stderr
    assert "prefetch: ok (org/tiny is complete in the cache (4.0 MiB))" in again.stdout
    assert hub.requests == []  # not even the file list: nothing left the cache


@pytest.mark.parametrize(
    ("model", "extra", "says"),
    [
        ("org/gated", {}, "org/gated is gated or private (HTTP 401) and HF_TOKEN is not set"),
        ("org/missing", {}, "org/missing does not exist on the hub (HTTP 404)"),
        ("org/tiny", {"SGLANG_ARGS": "--revision v9"}, "org/tiny has no revision of that name"),
    ],
)
def test_definite_refusal_keeps_the_server_from_starting(
    rig: LauncherRig, hub: FakeHub, model: str, extra: dict[str, str], says: str
) -> None:
    env = hub_env(rig, hub, model, **extra)
    done = rig.cli("provision", **env)
    assert done.returncode == 1
    assert f"prefetch: failed ({says}" in done.stdout
    assert "the server is not started (exit 78)" in done.stderr
    status = prefetch_status(rig)
    assert status["fatal"] is True and says in str(status["detail"])

    launcher = rig.start(**env)
    assert rig.wait_exit(launcher) == 78
    data = rig.status()
    assert data is not None and data["state"] == "failed"
    assert says in data["message"] and data["download"]["state"] == "failed"
    assert rig.starts() == []
    assert says in rig.output()


def test_gated_with_a_token_without_access_starts_the_server_anyway(
    rig: LauncherRig, hub: FakeHub
) -> None:
    env = hub_env(rig, hub, "org/gated", HF_TOKEN="hf_not_this_one")
    done = rig.cli("provision", **env)
    assert "HF_TOKEN has no access to it" in done.stdout
    assert "the server starts anyway" in done.stderr
    launcher = rig.start(**env)
    rig.wait_state("ready")
    data = rig.status()
    assert data is not None and data["download"]["kind"] == "gated"
    assert len(rig.starts()) == 1
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_unreachable_hub_is_reported_and_not_fatal(rig: LauncherRig, hub: FakeHub) -> None:
    env = hub_env(rig, hub, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    done = rig.cli("provision", **env)
    assert "prefetch: failed (org/tiny: cannot reach the hub (connection refused))" in done.stdout
    status = prefetch_status(rig)
    assert status["kind"] == "network" and status["fatal"] is False


def wait_prefetch_gone(rig: LauncherRig) -> None:
    """Wait for the background download process to end (it outlives `run`)."""
    pid = int(str(prefetch_status(rig)["pid"]))
    rig.wait_for(lambda: proc_gone(pid), "the download process to end")


def boot_again(rig: LauncherRig, env: dict[str, str]) -> str:
    """`entrypoint -- true` (the boot steps, then `true` instead of supervisord); its log.
    The entrypoint's children (prefetch, provisioning) keep its output open: read a file."""
    boot_log = rig.tmp / "boot.log"
    with open(boot_log, "wb") as out:
        boot = subprocess.Popen(
            rig.argv("entrypoint", "--", "true"),
            env={**rig.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=rig.tmp,
        )
    assert boot.wait(30) == 0
    return boot_log.read_text()


def test_boot_downloads_beside_provisioning_and_the_server_waits_for_it(
    rig: LauncherRig, hub: FakeHub
) -> None:
    hub.flowing.clear()  # the weights do not move until the test says so
    go = rig.tmp / "go"
    script = rig.tmp / "provision.sh"
    script.write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.02; done\necho provisioned\n")
    env = hub_env(rig, hub, PROVISIONING_SCRIPT=str(script), STANDIN_CAPTURE="0.2")
    assert "boot: prefetch: running (in the background as pid" in boot_again(rig, env)
    launcher = rig.start(**env)
    rig.wait_state("waiting_provisioning")
    go.touch()  # provisioning ends first: the server must wait for the download

    def downloading() -> bool:
        data = rig.status()
        phase = (data or {}).get("phase") or {}
        return phase.get("name") == "downloading" and bool(phase.get("bytes_total"))

    rig.wait_for(downloading, "the downloading phase with the repo's size")
    shown = rig.cli("status", **env)
    assert "phase      downloading the weights for" in shown.stdout
    assert "of 4.0 MiB" in shown.stdout
    assert rig.starts() == []  # never on a partial download
    hub.flowing.set()
    data = rig.wait_state("ready", timeout=30)
    status = prefetch_status(rig)
    assert status["state"] == "done"
    start_file = rig.state_dir / "start-1.json"
    assert start_file.stat().st_mtime >= float(str(status["finished_at"]))
    phases = [p["phase"] for p in data["phases"]]
    assert phases == [
        "waiting_provisioning",
        "downloading",
        "starting",
        "loading_weights",
        "kv_cache",
        "cuda_graph",
        "warmup",
        "ready",
    ]
    out = rig.output()
    assert "phase: downloading the weights (waiting for provisioning took" in out
    assert "phase: ready (warming up took" in out
    shown = rig.cli("status", **env)
    assert shown.returncode == 0
    assert "phase      ready for" in shown.stdout and ", cuda_graph 0." in shown.stdout
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0

    # Second boot of the same container: everything is cached, nothing is asked of the hub.
    hub.requests.clear()
    assert "boot: prefetch: ok (org/tiny is complete in the cache (4.0 MiB))" in boot_again(
        rig, env
    )
    launcher = rig.start(**env)
    data = rig.wait_state("ready", timeout=30)
    assert data["phases"][0]["phase"] == "starting"  # no wait at all
    assert hub.requests == []
    assert "complete in the cache" in prefetch_status(rig)["detail"]
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_not_enough_disk_fails_before_downloading(rig: LauncherRig, hub: FakeHub) -> None:
    hub.repos["org/tiny"].advertised = {"model-00001-of-00003.safetensors": 2**60}
    done = rig.cli("provision", **hub_env(rig, hub))
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("prefetch: "))
    assert line.startswith("prefetch: failed (not enough disk for org/tiny: 1073741824.0 GiB")
    assert "still to download" in line and "GiB free" in line
    assert not any(p.endswith(".safetensors") for p in hub.file_gets())
    status = prefetch_status(rig)
    assert status["kind"] == "disk" and status["fatal"] is False
    assert "the server starts anyway" in str(status["next"])


def test_a_stalled_download_is_reported_naming_the_phase(rig: LauncherRig, hub: FakeHub) -> None:
    hub.flowing.clear()
    env = hub_env(rig, hub, LAUNCHER_STALL_TIMEOUT="0.5")
    boot_again(rig, env)
    launcher = rig.start(**env)
    line = "startup looks stalled: no download progress for"
    rig.wait_for(lambda: line in rig.stderr(), "the stall warning")
    assert "while downloading the weights (LAUNCHER_STALL_TIMEOUT)" in rig.stderr()
    rig.wait_for(  # status.json's message too, as docs/coldstart.md says
        lambda: line in str((rig.status() or {}).get("message")), "the warning in status.json"
    )
    assert rig.starts() == []
    hub.flowing.set()
    wait_prefetch_gone(rig)
    rig.wait_state("ready", timeout=30)
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_a_failure_recorded_by_an_earlier_boot_does_not_stop_this_one(rig: LauncherRig) -> None:
    rig.run_dir.mkdir()
    (rig.run_dir / "prefetch.json").write_text(
        json.dumps({"state": "failed", "fatal": True, "detail": "org/old does not exist"})
    )
    env = {"PYTHONPATH": str(REPO_ROOT)}  # the model is the rig's local directory
    assert "boot: prefetch: skipped" in boot_again(rig, env)
    assert not (rig.run_dir / "prefetch.json").exists()
    launcher = rig.start(**env)
    rig.wait_state("ready")
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_sigterm_while_waiting_for_the_download_stops_at_once(
    rig: LauncherRig, hub: FakeHub
) -> None:
    hub.flowing.clear()
    env = hub_env(rig, hub)
    boot_again(rig, env)
    launcher = rig.start(**env)

    def downloading() -> bool:
        return ((rig.status() or {}).get("phase") or {}).get("name") == "downloading"

    rig.wait_for(downloading, "the downloading phase")
    launcher.terminate()
    # "at once": the download never ends (hub.flowing is clear), only the signal ends it
    assert rig.wait_exit(launcher) == 0
    data = rig.status()
    assert data is not None and data["state"] == "stopped"
    assert rig.starts() == []
    hub.flowing.set()
    wait_prefetch_gone(rig)
