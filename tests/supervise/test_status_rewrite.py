"""status.json deleted while the server is ready is written again (issue 19 item 12): the
image's HEALTHCHECK (`status`) reads it, so a cleaner that removes it must not make a healthy
container look broken until the next change of state."""

from __future__ import annotations

from conftest import LauncherRig


def test_a_deleted_status_file_is_written_again_while_ready(rig: LauncherRig) -> None:
    launcher = rig.start()
    rig.wait_state("ready")
    (rig.run_dir / "status.json").unlink()
    data = rig.wait_state("ready")  # rewritten on the next liveness probe
    assert data["message"].startswith("serving on")
    assert rig.cli("status").returncode == 0
    assert "status.json was deleted; written again" in rig.stderr()
    launcher.terminate()
    assert rig.wait_exit(launcher) == 0
