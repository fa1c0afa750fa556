"""Partial downloads and the prefetch's end (issue 19 items 2, 7, 10): earlier boots'
`<blob>.<id>.incomplete` files are removed and counted, only complete blobs count as reused,
every stop of `run` stops the prefetch (which removes its own partials), a download of a
model the server will not serve is stopped once provisioning ends, and progress moves with
the bytes on disk. The real huggingface_hub client against the loopback hub."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
from pathlib import Path

import psutil
from conftest import LauncherRig, proc_gone, wait_for
from fake_hub import FakeHub
from test_prefetch import boot_again, hub_env, prefetch_status, wait_prefetch_gone

from vast_sglang_launcher.coldstart import progress


def blobs(rig: LauncherRig, repo: str = "org/tiny") -> Path:
    folder = "models--" + repo.replace("/", "--")
    return rig.workspace / ".cache" / "huggingface" / "hub" / folder / "blobs"


def growing(rig: LauncherRig) -> bool:
    """A partial file with bytes in it (the download writes as the bytes arrive)."""
    for p in partials(rig):
        try:
            if p.stat().st_size > 0:
                return True
        except FileNotFoundError:  # renamed to its blob meanwhile
            continue
    return False


def partials(rig: LauncherRig) -> list[Path]:
    try:
        return [p for p in blobs(rig).iterdir() if p.name.endswith(".incomplete")]
    except FileNotFoundError:
        return []


def test_leftovers_of_earlier_boots_are_removed_and_not_counted_as_reused(
    rig: LauncherRig, hub: FakeHub
) -> None:
    repo = hub.repos["org/tiny"]
    weights = [p for p in repo.files if p.endswith(".safetensors")]
    sha = hashlib.sha256(repo.files[weights[0]]).hexdigest()
    blobs(rig).mkdir(parents=True)
    for tag in ("1a2b3c4d", "5e6f7a8b", "9c0d1e2f"):  # huggingface_hub 2.x: <blob>.<uuid8>
        (blobs(rig) / f"{sha}.{tag}.incomplete").write_bytes(b"x" * 20 * 1024)
    done = rig.cli("provision", **hub_env(rig, hub))
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "removed 3 partial files (60.0 KiB) left by an interrupted earlier download" in log
    assert "already in the cache" not in log  # nothing was reused
    assert partials(rig) == []
    assert prefetch_status(rig)["state"] == "done"


def test_a_partial_that_a_live_download_writes_is_kept(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    b = cache / "models--org--x" / "blobs"
    b.mkdir(parents=True)
    locks = cache / ".locks" / "models--org--x"
    locks.mkdir(parents=True)
    (b / "aaaa.11111111.incomplete").write_bytes(b"1" * 10)
    (b / "bbbb.22222222.incomplete").write_bytes(b"2" * 7)
    (b / "bbbb").write_bytes(b"3" * 5)
    fd = os.open(locks / "aaaa.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as huggingface_hub's WeakFileLock holds it while writing
    try:
        files: list[tuple[str, int, str | None]] = [("a", 10, "aaaa"), ("b", 5, "bbbb")]
        assert progress.reusable_bytes(cache, "org/x", files) == 5
        assert progress.remove_orphan_partials(cache, "org/x") == (1, 7)
    finally:
        os.close(fd)
    assert sorted(p.name for p in b.iterdir()) == ["aaaa.11111111.incomplete", "bbbb"]


def test_progress_moves_with_the_bytes_on_disk(rig: LauncherRig, hub: FakeHub) -> None:
    hub.rate = 512 * 1024  # each 1.3 MiB shard takes seconds: partial files grow meanwhile
    done = subprocess.Popen(
        rig.argv("provision"),
        env={**rig.env, **hub_env(rig, hub)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=rig.tmp,
    )
    rig.wait_for(lambda: growing(rig), "a partial file with bytes in it (not one 10 MiB step)", 60)
    hub.rate = None
    assert done.wait(60) == 0


def test_every_stop_of_run_stops_the_download_and_its_partials_go(
    rig: LauncherRig, hub: FakeHub
) -> None:
    hub.held_after = 64 * 1024  # every file stays partial (64 KiB written) until the stop
    env = hub_env(rig, hub)
    boot_again(rig, env)
    launcher = rig.start(**env)
    rig.wait_for(lambda: growing(rig), "a partial file being written", 60)
    # the prefetch (started by the boot) can be writing before `run` has its signal
    # handlers: wait until the launcher itself waits for the download
    rig.wait_for(
        lambda: "waiting for the weights to download" in rig.stderr(), "the launcher waiting", 60
    )
    pid = int(str(prefetch_status(rig)["pid"]))
    launcher.terminate()  # what supervisord does on `docker stop`
    assert rig.wait_exit(launcher, timeout=30) == 0
    assert proc_gone(pid) or not psutil.Process(pid).is_running()
    status = prefetch_status(rig)
    assert status["state"] == "stopped" and "removed" in str(status["detail"])
    assert partials(rig) == []
    assert "stopping the weight download" in rig.stderr()


def test_a_download_of_a_model_the_server_will_not_serve_is_stopped(
    rig: LauncherRig, hub: FakeHub
) -> None:
    hub.flowing.clear()  # the download of org/tiny cannot end while this test runs
    go = rig.tmp / "go"
    script = rig.tmp / "provision.sh"
    script.write_text(
        f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.02; done\n"
        f"echo '--model-path {rig.model}' > {rig.args_file}\n"
    )
    env = hub_env(rig, hub, PROVISIONING_SCRIPT=str(script))
    boot_again(rig, env)
    launcher = rig.start(**env)
    rig.wait_state("waiting_provisioning")
    rig.wait_for(lambda: prefetch_status(rig).get("repo") == "org/tiny", "the download's repo")
    go.touch()
    data = rig.wait_state("ready", timeout=60)
    assert data["download"]["state"] == "stopped"
    assert f"the server will serve {rig.model}, not org/tiny@main" in rig.stderr()
    wait_prefetch_gone(rig)
    assert prefetch_status(rig)["state"] == "stopped"
    hub.flowing.set()
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0


def test_a_relative_hf_home_is_one_cache_for_the_prefetch_and_the_server(
    rig: LauncherRig, hub: FakeHub
) -> None:
    env = hub_env(rig, hub, HF_HOME="rel/hf")
    done = rig.cli("provision", **env)  # run from rig.tmp, not from the workspace
    assert done.returncode == 0, done.stdout + done.stderr
    cache = rig.workspace / "rel" / "hf" / "hub" / "models--org--tiny"
    assert (cache / "blobs").is_dir() and not (rig.tmp / "rel").exists()
    got = rig.cli("plan", "--json", **env)
    assert json.loads(got.stdout)["env"]["HF_HOME"] == str(rig.workspace / "rel" / "hf")


def test_a_busy_hub_listing_is_tried_again_with_backoff(rig: LauncherRig, hub: FakeHub) -> None:
    hub.busy = [429, 500]
    done = rig.cli("provision", **hub_env(rig, hub))
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "org/tiny: the hub answered HTTP 429 listing the files; trying again in 0.5 s" in log
    assert "org/tiny: the hub answered HTTP 500 listing the files; trying again in 1 s" in log
    assert prefetch_status(rig)["state"] == "done"


def test_a_consistency_check_failure_is_one_line() -> None:
    from vast_sglang_launcher.hub import classify

    # huggingface_hub 2.4.0 file_download.py http_get raises this text (two lines).
    exc = OSError(
        "Consistency check failed: file should be of size 10 but has size 4 (model.bin).\n"
        "This is usually due to network issues while downloading the file. Please retry "
        "with `force_download=True`."
    )
    line = classify(exc, "org/x", False).line
    assert "\n" not in line and line.startswith("org/x: Consistency check failed")


def test_a_partial_the_stopped_download_leaves_is_removed_once_it_is_gone(tmp_path: Path) -> None:
    """A worker thread of the download can open a partial after the prefetch's own sweep, and
    a prefetch killed after the grace sweeps nothing: `run` removes what the dead process
    left, and leaves the partial of a live download alone."""
    import asyncio
    import sys

    from vast_sglang_launcher.coldstart.gate import stop_download
    from vast_sglang_launcher.settings import load_settings

    settings = load_settings(
        {"WORKSPACE": str(tmp_path / "ws"), "LAUNCHER_RUN_DIR": str(tmp_path / "run")}
    )
    cache = settings.hub_cache
    b = cache / "models--org--x" / "blobs"
    b.mkdir(parents=True)
    locks = cache / ".locks" / "models--org--x"
    locks.mkdir(parents=True)
    settings.run_dir.mkdir()
    ready = tmp_path / "ready"
    # a download that SIGTERM does not end, writing aaaa as huggingface_hub does: the blob's
    # lock taken (flock), the partial open
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"fd = os.open({str(locks / 'aaaa.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"f = open({str(b / 'aaaa.1a2b3c4d.incomplete')!r}, 'ab')\n"
            "f.write(b'x' * 100); f.flush()\n"
            f"open({str(ready)!r}, 'w').close()\n"
            "while True: time.sleep(1)\n",
        ]
    )
    # another live download (not the stopped one) writing bbbb: its partial stays
    other = tmp_path / "other"
    keeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, time\n"
            f"fd = os.open({str(locks / 'bbbb.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            f"open({str(b / 'bbbb.5e6f7a8b.incomplete')!r}, 'ab').write(b'y')\n"
            f"open({str(other)!r}, 'w').close()\n"
            "while True: time.sleep(1)\n",
        ]
    )
    try:
        wait_for(lambda: ready.exists() and other.exists(), "both writers ready", 30)
        me = psutil.Process(writer.pid)
        doc = {"state": "downloading", "repo": "org/x", "pid": me.pid}
        progress.write_status(
            progress.status_path(settings.run_dir), {**doc, "pid_started": me.create_time()}
        )
        lines: list[str] = []

        class Log:
            def info(self, msg: str, **_kw: object) -> None:
                lines.append(msg)

        asyncio.run(stop_download(settings, Log(), grace=0.2))
        assert proc_gone(writer.pid)  # SIGTERM ignored: killed after the grace (and reaped)
        assert sorted(p.name for p in b.iterdir()) == ["bbbb.5e6f7a8b.incomplete"]
        assert "removed 1 partial file (100 B) the stopped download of org/x left" in lines
    finally:
        for p in (writer, keeper):
            p.kill()
            p.wait()
