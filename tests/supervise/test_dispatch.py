"""One event queue, one handler per event (supervise/control.py, attempt.py,
restart_loop.py): signals that arrive during a backoff, together, or during a take-down,
asserted by what a user sees (exit status, state, starts, processes left); and the watch's
concerns (supervise/watch.py) one by one."""

from __future__ import annotations

import signal

from conftest import LauncherRig, proc_gone

from vast_sglang_launcher.supervise.probes import ProbeResult
from vast_sglang_launcher.supervise.watch import (
    Health,
    Liveness,
    ProbeSchedule,
    ProbeUrls,
    StartupDeadline,
)

CRASH_THEN_LONG_BACKOFF = {
    "STANDIN_CRASH_AFTER": "0.3",  # killed by SIGKILL after it was ready
    "LAUNCHER_BACKOFF_INITIAL": "3600",
    "LAUNCHER_BACKOFF_MAX": "3600",
}


def test_sigterm_during_a_backoff_stops_at_once(rig: LauncherRig) -> None:
    launcher = rig.start(**CRASH_THEN_LONG_BACKOFF)
    rig.wait_state("backoff")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0  # not the hour of the backoff
    data = rig.status()
    assert data is not None and data["state"] == "stopped"
    assert data["message"] == "stopped (SIGTERM)"
    assert len(rig.starts()) == 1
    assert all(proc_gone(p) for p in rig.tree_pids())


def test_sighup_during_a_backoff_starts_the_fresh_plan_now(rig: LauncherRig) -> None:
    rig.args_file.write_text("--served-model-name first\n")
    launcher = rig.start(**CRASH_THEN_LONG_BACKOFF)
    rig.wait_state("backoff")
    rig.args_file.write_text("--served-model-name second\n")
    launcher.send_signal(signal.SIGHUP)
    starts = rig.wait_starts(2, timeout=120)  # not after the hour of the backoff
    assert [s["args"]["served_model_name"] for s in starts[:2]] == ["first", "second"]
    assert rig.wait_for(lambda: (rig.status() or {}).get("restarts") == 1, "one restart")
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0
    assert all(proc_gone(p) for p in rig.tree_pids())


def test_a_broken_plan_on_sighup_during_a_backoff_keeps_waiting(rig: LauncherRig) -> None:
    launcher = rig.start(**CRASH_THEN_LONG_BACKOFF)
    rig.wait_state("backoff")
    rig.args_file.write_text('--served-model-name "unbalanced\n')
    launcher.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "restart refused" in rig.stderr(), "the refusal")
    assert (rig.status() or {}).get("state") == "backoff"
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0
    assert len(rig.starts()) == 1


def test_the_probes_go_on_after_a_refused_sighup(rig: LauncherRig) -> None:
    """A SIGHUP whose plan fails leaves the server running and watched: the liveness
    probes go on (each answer also rewrites a deleted status.json), and so does readiness
    when the request came during the load."""
    launcher = rig.start(STANDIN_BIND_DELAY="0.5", STANDIN_WARMUP="1.0")
    rig.wait_state("starting")
    rig.args_file.write_text('--served-model-name "unbalanced\n')
    launcher.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: "restart refused" in rig.stderr(), "the refusal")
    rig.wait_state("ready")
    launcher.send_signal(signal.SIGHUP)
    rig.wait_for(lambda: rig.stderr().count("restart refused") == 2, "the second refusal")
    (rig.run_dir / "status.json").unlink()
    rig.wait_for(lambda: rig.status() is not None, "status.json written again")
    assert len(rig.starts()) == 1
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0


def test_sighup_and_sigterm_at_once_stop_without_a_new_start(rig: LauncherRig) -> None:
    launcher = rig.start(STANDIN_CHILDREN="1")
    rig.wait_state("ready")
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGHUP)
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0
    data = rig.status()
    assert data is not None and data["state"] == "stopped", rig.output()
    assert len(rig.starts()) == 1
    assert "received SIGTERM: stopping" in rig.stderr()
    rig.wait_gone(tree)


def test_sigterm_during_a_restarts_take_down_stops_and_a_second_one_hurries(
    rig: LauncherRig,
) -> None:
    """SIGHUP: the old server drains (it ignores SIGTERM here, for an hour of
    LAUNCHER_STOP_TIMEOUT); a SIGTERM meanwhile turns the restart into a stop (no new
    start), and a second one kills the server now."""
    launcher = rig.start(
        STANDIN_IGNORE_SIGTERM="1", STANDIN_CHILDREN="1", LAUNCHER_STOP_TIMEOUT="3600"
    )
    rig.wait_state("ready")
    tree = rig.tree_pids()
    launcher.send_signal(signal.SIGHUP)
    rig.wait_state("stopping")
    launcher.send_signal(signal.SIGTERM)
    rig.wait_for(lambda: "received SIGTERM: stopping" in rig.stderr(), "the stop")
    assert launcher.poll() is None  # still draining: the first stop waits
    launcher.send_signal(signal.SIGTERM)
    assert rig.wait_exit(launcher, timeout=120) == 0  # not the hour
    assert "killing the server now" in rig.stderr()
    assert len(rig.starts()) == 1
    data = rig.status()
    assert data is not None and data["state"] == "stopped"
    rig.wait_gone(tree)


# --- the watch's concerns, alone ------------------------------------------------------------


def test_the_startup_deadline_names_the_last_answer() -> None:
    deadline = StartupDeadline.after(100.0, 30)
    assert not deadline.passed(129.9) and deadline.passed(130.0)
    assert deadline.reason("http://h/ready", None).endswith(
        "no probe of http://h/ready was answered"
    )
    assert "got HTTP 503" in deadline.reason("u", ProbeResult(False, status=503))
    assert "within 30 s (LAUNCHER_STARTUP_TIMEOUT)" in deadline.reason("u", None)


def test_readiness_falls_back_to_health_once_on_404() -> None:
    urls = ProbeUrls("0.0.0.0", 18000, "0.5.23", serves_api=True)
    assert urls.current == "http://127.0.0.1:18000/ready"
    assert not urls.not_served(ProbeResult(False, status=503))
    assert urls.not_served(ProbeResult(False, status=404))
    assert urls.current == urls.live == "http://127.0.0.1:18000/health"
    assert not urls.not_served(ProbeResult(False, status=404))  # /health's 404 is a failure
    old = ProbeUrls("::", 1, "0.5.8", serves_api=True)
    assert old.current == old.live == "http://[::1]:1/health"
    rank1 = ProbeUrls("127.0.0.1", 1, "0.5.23", serves_api=False)
    assert rank1.current.endswith("/health")


def test_a_probe_sent_before_the_ready_line_is_dropped_for_a_fresh_one() -> None:
    schedule = ProbeSchedule(now=0.0)
    assert schedule.due == 0.0
    first = schedule.sent()
    assert schedule.due is None and schedule.in_flight
    assert schedule.on_ready_line(now=1.0)  # dropped
    assert schedule.due == 1.0 and not schedule.in_flight
    assert not schedule.answered(first, next_due=5.0)  # its late answer is stale
    second = schedule.sent()
    assert not schedule.on_ready_line(now=2.0)  # sent after the line: kept
    assert schedule.answered(second, next_due=2.5) and schedule.due == 2.5
    assert not schedule.answered(second, next_due=9.0)  # answered once
    schedule.sent()
    schedule.dropped(now=4.0)  # a watch that ended: probing again at once
    assert not schedule.in_flight and schedule.due == 4.0
    idle = ProbeSchedule(now=0.0)
    idle.answered(idle.sent(), next_due=10.0)
    assert not idle.on_ready_line(now=3.0) and idle.due == 3.0  # waiting: probe at once


def test_liveness_gives_up_after_the_allowed_failures_in_a_row() -> None:
    live = Liveness(allowed=3)
    bad, good = ProbeResult(False, error="no answer within 1 s"), ProbeResult(True)
    assert [live.record(r) for r in (good, bad, bad, good)] == [
        Health.HEALTHY,
        Health.FAILING,
        Health.FAILING,
        Health.RECOVERED,
    ]
    assert [live.record(bad) for _ in range(3)] == [Health.FAILING, Health.FAILING, Health.DEAD]
