"""Boot steps through `provision`: order, run-every-boot, run-once, markers, interruption."""

import functools
import signal
import subprocess
import sys

import psutil
import pytest
from conftest import wait_for

from vast_sglang_launcher import markers

PROV = ".provisioning"
COMPLETE = ".provisioning_complete"
FAILED = ".provisioning_failed"
FIRST_BOOT = ".first_boot_complete"


def counting_script(boot_root, name, extra=""):
    """A script that appends its name to `order`, records whether `.provisioning` exists,
    and exits with $EXIT_<NAME> (default 0)."""
    order = boot_root.tmp / "order"
    seen = boot_root.tmp / f"{name}.saw-provisioning"
    return boot_root.script(
        f"{name}.sh",
        f"echo {name} >> {order}\n"
        f'if [ -e "$LAUNCHER_MARKER_DIR/{PROV}" ]; then echo yes > {seen}\n'
        f"else echo no > {seen}; fi\n"
        f"echo {name} output\n{extra}"
        f"exit ${{EXIT_{name.upper()}:-0}}\n",
    )


def order(boot_root):
    path = boot_root.tmp / "order"
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def two_scripts(boot_root):
    hot = counting_script(boot_root, "hotfix")
    prov = counting_script(boot_root, "prov")
    return {"HOTFIX_SCRIPT": str(hot), "PROVISIONING_SCRIPT": str(prov)}


def test_hotfix_runs_every_boot_and_provisioning_once(boot_root, two_scripts):
    first = boot_root.run("provision", **two_scripts)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-3:] == ["hotfix: ok", "first boot: ok", "provisioning: ok"]
    assert boot_root.marker(COMPLETE).exists()
    assert boot_root.marker(FIRST_BOOT).exists()
    assert not boot_root.marker(PROV).exists()
    assert not boot_root.marker(FAILED).exists()

    second = boot_root.run("provision", **two_scripts)
    assert second.returncode == 0, second.stderr
    assert "provisioning: skipped" in second.stdout
    assert "first boot: skipped" in second.stdout
    assert order(boot_root) == ["hotfix", "prov", "hotfix"]


def test_provisioning_marker_exists_exactly_while_it_runs(boot_root, two_scripts):
    out = boot_root.run("provision", **two_scripts)
    assert out.returncode == 0, out.stderr
    assert (boot_root.tmp / "prov.saw-provisioning").read_text() == "yes\n"
    assert (boot_root.tmp / "hotfix.saw-provisioning").read_text() == "no\n"
    assert not boot_root.marker(PROV).exists()
    assert "prov output" in (boot_root.logs / "provisioning.log").read_text()


def test_hotfix_runs_before_first_boot_and_provisioning(boot_root, two_scripts):
    boot_root.tool("apt-get", f"#!/bin/sh\necho apt-$1 >> {boot_root.tmp / 'order'}\n")
    out = boot_root.run("provision", APT_PACKAGES="curl", **two_scripts)
    assert out.returncode == 0, out.stderr
    assert order(boot_root) == ["hotfix", "apt-update", "apt-install", "prov"]


def test_failed_hotfix_does_not_stop_the_boot(boot_root, two_scripts):
    out = boot_root.run("provision", EXIT_HOTFIX="5", **two_scripts)
    assert out.returncode == 1
    assert "hotfix: failed (exit status 5" in out.stdout
    assert "provisioning: ok" in out.stdout
    assert order(boot_root) == ["hotfix", "prov"]


def test_failed_provisioning_is_recorded_and_retried_until_it_succeeds(boot_root, two_scripts):
    out = boot_root.run("provision", EXIT_PROV="3", **two_scripts)
    assert out.returncode == 1
    assert "provisioning: failed (exit status 3" in out.stdout
    assert boot_root.marker(FAILED).read_text().splitlines()[0] == "3"
    assert not boot_root.marker(COMPLETE).exists()
    assert not boot_root.marker(PROV).exists()
    # The first boot is independent of provisioning.
    assert boot_root.marker(FIRST_BOOT).exists()

    again = boot_root.run("provision", **two_scripts)
    assert again.returncode == 0, again.stderr
    assert boot_root.marker(COMPLETE).exists()
    assert not boot_root.marker(FAILED).exists()
    assert order(boot_root).count("prov") == 2


def test_unreachable_provisioning_script_counts_as_failed(boot_root, script_server):
    url = script_server.add("/nope.sh")
    out = boot_root.run("provision", PROVISIONING_SCRIPT=url)
    assert out.returncode == 1
    failed = boot_root.marker(FAILED).read_text().splitlines()
    assert failed[0] == "1"
    assert "404" in failed[1]
    assert not boot_root.marker(PROV).exists()


def test_force_reruns_completed_steps(boot_root, two_scripts):
    boot_root.tool("apt-get", f"#!/bin/sh\necho apt-$1 >> {boot_root.tmp / 'order'}\n")
    env = {"APT_PACKAGES": "curl", **two_scripts}
    assert boot_root.run("provision", **env).returncode == 0
    assert boot_root.run("provision", **env).returncode == 0
    assert boot_root.run("provision", "--force", **env).returncode == 0
    assert order(boot_root) == [
        *("hotfix", "apt-update", "apt-install", "prov"),
        "hotfix",
        *("hotfix", "apt-update", "apt-install", "prov"),
    ]


def test_nothing_configured_only_marks_the_first_boot(boot_root):
    out = boot_root.run("provision")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "hotfix: skipped (HOTFIX_SCRIPT is not set)",
        "first boot: ok",
        "provisioning: skipped (PROVISIONING_SCRIPT is not set)",
    ]
    assert sorted(p.name for p in boot_root.markers.iterdir()) == [FIRST_BOOT]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_provisioning_removes_its_marker_and_its_processes(boot_root, sig):
    pids = boot_root.tmp / "pids"
    script = boot_root.script(
        "slow.sh", f"sleep 30 &\necho $$ $! > {pids}.tmp\nmv {pids}.tmp {pids}\nwait\n"
    )
    proc = boot_root.popen("provision", PROVISIONING_SCRIPT=str(script))
    try:
        wait_for(pids.exists)
        assert boot_root.marker(PROV).exists()
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig
    assert f"provisioning: interrupted (by {sig.name})" in stdout
    assert not boot_root.marker(PROV).exists()
    assert not boot_root.marker(COMPLETE).exists()
    assert not boot_root.marker(FAILED).exists()
    for pid in map(int, pids.read_text().split()):
        wait_for(functools.partial(lambda p: not _running(p), pid))
    # The next boot provisions again.
    quick = boot_root.script("quick.sh", "echo ok\n")
    out = boot_root.run("provision", PROVISIONING_SCRIPT=str(quick))
    assert "provisioning: ok" in out.stdout


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", ["dead", "", "garbage\n"], ids=["dead-pid", "empty", "junk"])
def test_stale_provisioning_marker_is_removed_and_provisioning_runs(
    boot_root, two_scripts, content
):
    text = f"{_dead_pid()}\n" if content == "dead" else content
    boot_root.marker(PROV).write_text(text)
    out = boot_root.run("provision", **two_scripts)
    assert out.returncode == 0, out.stderr
    assert "stale" in out.stderr
    assert "provisioning: ok" in out.stdout
    assert not boot_root.marker(PROV).exists()
    assert boot_root.marker(COMPLETE).exists()


def provision_while_owned(boot_root, two_scripts, release):
    """`provision` while another process owns the marker: `release()` (the owner finishes or
    dies) once provision says it waits, whatever the machine's load. (rc, stdout, stderr)"""
    err = boot_root.tmp / "provision.stderr"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            boot_root.argv("provision"),
            env={**boot_root.env, **two_scripts},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=boot_root.tmp,
        )
    try:
        wait_for(lambda: "waiting for it to finish" in err.read_text())
        release()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err.read_text()


def test_provision_waits_for_a_running_provisioning(boot_root, two_scripts):
    # Another process provisions: it holds the marker, then completes (when told to).
    go = boot_root.tmp / "go"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time; d, go = map(pathlib.Path, sys.argv[1:]);\n"
            "while not go.exists(): time.sleep(0.02)\n"
            f"(d / '{COMPLETE}').write_text(''); (d / '{PROV}').unlink()",
            str(boot_root.markers),
            str(go),
        ]
    )
    markers.claim(boot_root.marker(PROV), owner.pid)
    try:
        rc, out, err = provision_while_owned(boot_root, two_scripts, go.touch)
    finally:
        go.touch()
        owner.wait(30)
    assert rc == 0, err
    assert "provisioning: skipped" in out
    assert "prov" not in order(boot_root)


def test_provision_takes_over_when_the_running_owner_dies(boot_root, two_scripts):
    owner = subprocess.Popen(["sleep", "600"])
    markers.claim(boot_root.marker(PROV), owner.pid)
    try:
        rc, out, err = provision_while_owned(boot_root, two_scripts, owner.kill)
    finally:
        owner.kill()
        owner.wait()
    assert rc == 0, err
    assert "provisioning: ok" in out
    assert not boot_root.marker(PROV).exists()


def test_marker_owner_is_checked_by_start_time(tmp_path):
    path = tmp_path / PROV
    me = markers.claim(path)
    assert markers.read_owner(path) == me
    assert markers.is_alive(me)
    assert not markers.provisioning_abandoned(tmp_path)
    # Same pid, other start time: a pid reused after a restart is not the owner.
    path.write_text(f"{me.pid}\n{(me.started or 0) - 1000}\n")
    assert not markers.is_alive(markers.read_owner(path))  # type: ignore[arg-type]
    assert markers.provisioning_abandoned(tmp_path)
    path.unlink()
    assert markers.read_owner(path) is None
    assert not markers.provisioning_abandoned(tmp_path)
