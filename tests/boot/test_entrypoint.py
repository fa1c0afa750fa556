"""`entrypoint` end to end in a temporary root: boot steps, background provisioning, exec."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import processes_naming, wait_for

from vast_sglang_launcher import markers
from vast_sglang_launcher.boot.entrypoint import final_command
from vast_sglang_launcher.edge.portal import DEFAULT_PORTAL_CONFIG
from vast_sglang_launcher.settings import load_settings

PROV = ".provisioning"
COMPLETE = ".provisioning_complete"
FAILED = ".provisioning_failed"

# The CMD: records its pid, environment and what it saw when it started.
RECORD = (
    "import json, os, sys; json.dump({'pid': os.getpid(), 'env': dict(os.environ),"
    " 'provisioning': os.path.exists(sys.argv[2]), 'hotfix': os.path.exists(sys.argv[3])},"
    " open(sys.argv[1], 'w'))"
)


def start_entrypoint(boot_root, cmd, **env):
    """Start `entrypoint -- CMD`; its output goes to files, since the background provisioning
    process inherits it and would hold pipes open."""
    out = (boot_root.tmp / "entrypoint.out").open("w")
    err = (boot_root.tmp / "entrypoint.err").open("w")
    with out, err:
        return subprocess.Popen(
            boot_root.argv("entrypoint", "--", *cmd),
            env={**boot_root.env, **env},
            stdout=out,
            stderr=err,
            cwd=boot_root.tmp,
        )


def record_cmd(boot_root):
    result = boot_root.tmp / "cmd.json"
    hotfix_flag = boot_root.tmp / "hotfix-ran"
    cmd = [sys.executable, "-c", RECORD, str(result), str(boot_root.marker(PROV)), str(hotfix_flag)]
    return cmd, result, hotfix_flag


def test_boot_steps_run_then_the_command_replaces_the_launcher(boot_root):
    cmd, result, hotfix_flag = record_cmd(boot_root)
    release = boot_root.tmp / "release"
    hotfix = boot_root.script("hot.sh", f"touch {hotfix_flag}\necho hotfix done\n")
    prov = boot_root.script(
        "prov.sh",
        "echo provisioning started\n"
        f"while [ ! -e {release} ]; do sleep 0.05; done\n"
        "echo provisioning finished\n",
    )
    try:
        proc = start_entrypoint(
            boot_root,
            cmd,
            HOTFIX_SCRIPT=str(hotfix),
            PROVISIONING_SCRIPT=str(prov),
            MODEL_NAME="org/model",
        )
        assert proc.wait(timeout=30) == 0
        seen = json.loads(result.read_text())
        # Exec'd: the CMD is the process the test started, with the exported environment.
        assert seen["pid"] == proc.pid
        env = seen["env"]
        assert env["SGLANG_MODEL"] == env["MODEL_NAME"] == "org/model"
        assert env["HOME"] == env["WORKSPACE"] == str(boot_root.workspace)
        assert env["PORTAL_CONFIG"] == DEFAULT_PORTAL_CONFIG
        # What supervisor/*.conf expands, and the directories it needs.
        assert env["LAUNCHER_PYTHON"] == sys.executable
        assert env["LAUNCHER_RUN_DIR"] == str(boot_root.run_dir)
        assert env["LAUNCHER_LOG_DIR"] == str(boot_root.logs)
        assert int(env["LAUNCHER_SUPERVISOR_STOPWAIT"]) > 30
        assert boot_root.run_dir.is_dir() and boot_root.logs.is_dir()
        assert seen["hotfix"] is True
        # Provisioning runs in the background; its marker existed before the CMD started.
        assert seen["provisioning"] is True
        owner = markers.read_owner(boot_root.marker(PROV))
        assert owner is not None and markers.is_alive(owner)
        assert boot_root.workspace.is_dir()
    finally:
        release.touch()
    wait_for(lambda: not boot_root.marker(PROV).exists())
    assert boot_root.marker(COMPLETE).exists()
    assert not boot_root.marker(FAILED).exists()
    assert ".first_boot_complete" in {p.name for p in boot_root.markers.iterdir()}
    log = (boot_root.logs / "provisioning.log").read_text()
    assert "provisioning started\nprovisioning finished\n" in log
    wait_for(lambda: "provisioning finished" in (boot_root.tmp / "entrypoint.out").read_text())
    # the background provisioning exits after it removed its marker
    wait_for(lambda: not processes_naming(boot_root.tmp), "the background provisioning to end")


def test_failed_provisioning_still_starts_the_instance(boot_root):
    cmd, result, _ = record_cmd(boot_root)
    prov = boot_root.script("prov.sh", "echo broken\nexit 4\n")
    proc = start_entrypoint(boot_root, cmd, PROVISIONING_SCRIPT=str(prov))
    assert proc.wait(timeout=30) == 0
    assert json.loads(result.read_text())["pid"] == proc.pid
    wait_for(lambda: boot_root.marker(FAILED).exists() and not boot_root.marker(PROV).exists())
    assert boot_root.marker(FAILED).read_text().splitlines()[0] == "4"
    assert not boot_root.marker(COMPLETE).exists()
    wait_for(lambda: not processes_naming(boot_root.tmp), "the background provisioning to end")


def test_completed_provisioning_is_not_run_again(boot_root):
    cmd, result, _ = record_cmd(boot_root)
    flag = boot_root.tmp / "prov-ran"
    prov = boot_root.script("prov.sh", f"touch {flag}\n")
    boot_root.marker(COMPLETE).touch()
    proc = start_entrypoint(boot_root, cmd, PROVISIONING_SCRIPT=str(prov))
    assert proc.wait(timeout=30) == 0
    assert json.loads(result.read_text())["provisioning"] is False
    # Decided before the exec: skipped, so no background process was started that could
    # still run the script (no wait needed to see that it did not).
    err = (boot_root.tmp / "entrypoint.err").read_text()
    assert f"boot: provisioning: skipped ({boot_root.marker(COMPLETE)} exists" in err, err
    assert not flag.exists()


def test_stale_provisioning_marker_is_cleared_at_boot(boot_root):
    cmd, result, _ = record_cmd(boot_root)
    # Left by a previous run of the container: pid 1 is alive, but it started at another time.
    boot_root.marker(PROV).write_text("1\n12345.0\n")
    proc = start_entrypoint(boot_root, cmd)
    assert proc.wait(timeout=30) == 0
    assert json.loads(result.read_text())["provisioning"] is False
    assert not boot_root.marker(PROV).exists()


@pytest.mark.parametrize(
    ("env", "model"),
    [
        ({"SGLANG_MODEL": "a/b"}, "a/b"),
        ({"MODEL_NAME": "c/d"}, "c/d"),
        ({"SGLANG_MODEL": "a/b", "MODEL_NAME": "c/d"}, "a/b"),
    ],
)
def test_model_variables_are_linked(boot_root, env, model):
    cmd, result, _ = record_cmd(boot_root)
    out = boot_root.run("entrypoint", "--", *cmd, PORTAL_CONFIG="localhost:1:2:/:X", **env)
    assert out.returncode == 0, out.stderr
    seen = json.loads(result.read_text())["env"]
    assert seen["SGLANG_MODEL"] == seen["MODEL_NAME"] == model
    assert seen["PORTAL_CONFIG"] == "localhost:1:2:/:X"


def test_without_a_command_supervisord_replaces_the_entrypoint(boot_root):
    record = boot_root.tmp / "supervisord.args"
    boot_root.tool("supervisord", f'#!/bin/sh\necho "$$ $*" > {record}\n')
    proc = subprocess.Popen(
        boot_root.argv("entrypoint"),
        env=boot_root.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.wait(timeout=30) == 0
    pid, *args = record.read_text().split()
    assert int(pid) == proc.pid
    assert args == ["-n", "-c", boot_root.env["LAUNCHER_SUPERVISORD_CONFIG"]]


def test_a_missing_command_is_one_clear_line(boot_root):
    out = boot_root.run("entrypoint", "--", "no-such-command-xyz")
    assert out.returncode == 127
    assert out.stderr.strip().splitlines()[-1] == (
        "vast-sglang-launcher: cannot start 'no-such-command-xyz': not found on PATH"
    )


def test_sigterm_stops_background_provisioning_and_removes_its_marker(boot_root):
    cmd, _, _ = record_cmd(boot_root)
    started = boot_root.tmp / "started"
    prov = boot_root.script("prov.sh", f"touch {started}\nsleep 30\n")
    proc = start_entrypoint(boot_root, cmd, PROVISIONING_SCRIPT=str(prov))
    assert proc.wait(timeout=30) == 0
    wait_for(started.exists)
    owner = markers.read_owner(boot_root.marker(PROV))
    assert owner is not None and owner.pid != proc.pid and markers.is_alive(owner)
    os.kill(owner.pid, signal.SIGTERM)
    wait_for(lambda: not boot_root.marker(PROV).exists())
    wait_for(lambda: not markers.is_alive(owner))
    assert not boot_root.marker(COMPLETE).exists()
    assert not boot_root.marker(FAILED).exists()


def test_sigterm_during_the_hotfix_stops_the_boot(boot_root):
    cmd, result, _ = record_cmd(boot_root)
    started = boot_root.tmp / "started"
    hotfix = boot_root.script("hot.sh", f"touch {started}\nsleep 30\n")
    proc = start_entrypoint(boot_root, cmd, HOTFIX_SCRIPT=str(hotfix))
    try:
        wait_for(started.exists)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not result.exists()


def test_final_command():
    settings = load_settings({"LAUNCHER_SUPERVISORD_CONFIG": "/etc/s.conf"})
    assert final_command(settings, []) == ["supervisord", "-n", "-c", "/etc/s.conf"]
    assert final_command(settings, ["--", "bash", "-l"]) == ["bash", "-l"]
    assert final_command(settings, ["bash"]) == ["bash"]
