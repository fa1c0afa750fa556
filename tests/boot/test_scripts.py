"""HOTFIX_SCRIPT / PROVISIONING_SCRIPT sources: download, local paths, saving, running, logs."""

import os
import stat
import subprocess
import sys

import pytest
from conftest import wait_for

from vast_sglang_launcher.boot.scripts import is_url, script_argv, to_unix
from vast_sglang_launcher.redact import Redactor, redact_url, url_secrets

SECRET = "s3cr3t-token-value"
HF_SECRET = "hf_abcdefghijklmnop"


def test_url_script_runs_with_bash_crlf_converted_saved_0700_and_logged(boot_root, script_server):
    body = b"echo hotfix says hello\r\necho second line from $0\r\n"
    url = script_server.add("/hotfix.sh", (200, body))
    out = boot_root.run("provision", HOTFIX_SCRIPT=f"{url}?token={SECRET}&x=1")

    assert out.returncode == 0, out.stderr
    assert "hotfix says hello\n" in out.stdout
    assert "hotfix: ok" in out.stdout
    saved = boot_root.run_dir / "hotfix.sh"
    assert saved.read_bytes() == body.replace(b"\r\n", b"\n")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o700
    log = (boot_root.logs / "hotfix.log").read_text()
    assert "hotfix says hello\nsecond line from" in log
    # The token never reaches a log line, on stderr or in the log file; the URL is shown masked.
    assert SECRET not in out.stderr + out.stdout + log
    assert "token=***" in out.stderr


def test_secret_settings_and_url_userinfo_are_never_logged(boot_root, script_server):
    script_server.add(f"/{HF_SECRET}/gone.sh", (404, b"no\n"))
    url = script_server.url(f"/{HF_SECRET}/gone.sh").replace("//", f"//user:{SECRET}@", 1)
    out = boot_root.run("provision", HOTFIX_SCRIPT=url, HF_TOKEN=HF_SECRET)

    assert out.returncode == 1
    assert "404" in out.stderr
    log = boot_root.logs / "hotfix.log"
    logged = log.read_text() if log.exists() else ""
    for secret in (SECRET, HF_SECRET):
        assert secret not in out.stderr + out.stdout + logged


def test_404_is_not_retried_and_boot_continues(boot_root, script_server):
    url = script_server.add("/missing.sh")  # no response queued: 404
    prov = boot_root.script("prov.sh", "echo provisioned\n")
    out = boot_root.run(
        "provision", HOTFIX_SCRIPT=f"{url}?token={SECRET}", PROVISIONING_SCRIPT=str(prov)
    )

    assert out.returncode == 1
    assert script_server.hits("/missing.sh") == 1
    lines = out.stdout.splitlines()
    assert any(line.startswith("hotfix: failed") and "404" in line for line in lines)
    assert "provisioning: ok" in lines
    assert "HOTFIX_SCRIPT" in out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_500_then_success_is_retried(boot_root, script_server):
    url = script_server.add(
        "/flaky.sh", (500, b"oops"), (503, b"busy"), (200, b"echo finally worked\n")
    )
    out = boot_root.run("provision", HOTFIX_SCRIPT=url)

    assert out.returncode == 0, out.stderr
    assert script_server.hits("/flaky.sh") == 3
    assert "finally worked" in out.stdout
    assert "retrying" in out.stderr


def test_5xx_gives_up_after_the_retries(boot_root, script_server):
    url = script_server.add("/down.sh", (502, b"bad gateway"))
    out = boot_root.run("provision", HOTFIX_SCRIPT=url, LAUNCHER_DOWNLOAD_RETRIES="1")

    assert out.returncode == 1
    assert script_server.hits("/down.sh") == 2
    assert "502" in out.stdout
    assert "tried 2 times" in out.stderr


def test_network_error_is_retried_then_reported(boot_root, script_server):
    url = script_server.url("/x.sh")
    script_server.close()  # nothing listens on the port any more
    out = boot_root.run("provision", HOTFIX_SCRIPT=url, LAUNCHER_DOWNLOAD_RETRIES="1")

    assert out.returncode == 1
    assert "tried 2 times" in out.stderr
    assert "hotfix: failed" in out.stdout
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("headers", [{}, {"X-No-Length": "1"}], ids=["length", "streamed"])
def test_too_large_script_is_refused_and_not_run(boot_root, script_server, headers):
    flag = boot_root.tmp / "ran"
    body = f"touch {flag}\n".encode() + b"#" * 5000 + b"\n"
    url = script_server.add("/big.sh", (200, body, headers))
    out = boot_root.run("provision", HOTFIX_SCRIPT=url, LAUNCHER_DOWNLOAD_MAX_BYTES="1000")

    assert out.returncode == 1
    assert "larger than 1000 bytes" in out.stdout
    assert "LAUNCHER_DOWNLOAD_MAX_BYTES" in out.stderr
    assert not flag.exists()
    assert script_server.hits("/big.sh") == 1


def test_redirects_are_followed(boot_root, script_server):
    script_server.add("/real.sh", (200, b"echo via redirect\n"))
    url = script_server.add("/short", (302, b"", {"Location": "/real.sh"}))
    out = boot_root.run("provision", HOTFIX_SCRIPT=url)

    assert out.returncode == 0, out.stderr
    assert "via redirect" in out.stdout


def test_local_script_with_shebang_runs_with_its_interpreter(boot_root):
    script = boot_root.script(
        "hot.py", f"#!{sys.executable}\nimport sys\nprint('python', sys.version_info[0])\n"
    )
    out = boot_root.run("provision", HOTFIX_SCRIPT=str(script))

    assert out.returncode == 0, out.stderr
    assert "python 3" in out.stdout
    # The user's file is untouched; the launcher runs its own copy.
    assert stat.S_IMODE(script.stat().st_mode) != 0o700


def test_local_script_with_crlf_endings(boot_root):
    script = boot_root.script("hot.sh", b"x=42\r\necho value=$x.\r\n")
    out = boot_root.run("provision", HOTFIX_SCRIPT=str(script))

    assert out.returncode == 0, out.stderr
    assert "value=42.\n" in out.stdout


def test_missing_local_path_is_one_clear_line(boot_root):
    out = boot_root.run("provision", HOTFIX_SCRIPT="/nonexistent/hotfix.sh")

    assert out.returncode == 1
    assert "HOTFIX_SCRIPT: /nonexistent/hotfix.sh is not a file" in out.stderr
    assert "Traceback" not in out.stderr


def test_output_streams_line_by_line_while_the_script_runs(boot_root):
    release = boot_root.tmp / "release"
    script = boot_root.script(
        "slow.sh",
        f"echo first\nwhile [ ! -e {release} ]; do sleep 0.05; done\necho second\n",
    )
    proc = boot_root.popen("provision", HOTFIX_SCRIPT=str(script))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        log = boot_root.logs / "hotfix.log"
        wait_for(lambda: "first" in (log.read_text() if log.exists() else ""), "the first line")
        assert "second" not in log.read_text()
        assert proc.poll() is None
        release.touch()
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rest.startswith("second\n")
    assert proc.returncode == 0


def test_script_failure_exit_status_is_reported(boot_root):
    script = boot_root.script("bad.sh", "echo about to fail\nexit 7\n")
    out = boot_root.run("provision", HOTFIX_SCRIPT=str(script))

    assert out.returncode == 1
    assert "hotfix: failed (exit status 7" in out.stdout
    assert "==> hotfix: exit status 7" in (boot_root.logs / "hotfix.log").read_text()


def test_scripts_see_the_service_environment(boot_root):
    script = boot_root.script("env.sh", 'echo "home=$HOME model=$MODEL_NAME"\n')
    out = boot_root.run("provision", HOTFIX_SCRIPT=str(script), SGLANG_MODEL="org/model")

    assert f"home={boot_root.workspace} model=org/model" in out.stdout


# --- pure helpers --------------------------------------------------------------------------


def test_redact_url_masks_query_values_and_password():
    url = f"https://user:{SECRET}@example.com/a/b.sh?token={SECRET}&flag#frag"
    shown = redact_url(url)
    assert SECRET not in shown
    assert shown == "https://user:***@example.com/a/b.sh?token=***&flag#frag"
    assert SECRET in url_secrets(url)


def test_redactor_masks_every_occurrence():
    redact = Redactor([SECRET, "ab"])  # too short to mask
    assert redact(f"{SECRET} and {SECRET} ab") == "*** and *** ab"


def test_source_kinds_and_helpers(tmp_path):
    assert is_url("https://x/y.sh") and is_url("HTTP://x/y.sh")
    assert not is_url("/opt/hotfix.sh") and not is_url("file:///opt/hotfix.sh")
    assert to_unix(b"a\r\nb\r\n") == b"a\nb\n"
    assert script_argv(tmp_path / "s", b"#!/bin/sh\n") == [str(tmp_path / "s")]
    assert script_argv(tmp_path / "s", b"echo hi\n") == ["bash", str(tmp_path / "s")]


def test_bash_is_used_for_scripts_without_shebang(boot_root):
    script = boot_root.script("b.sh", 'echo "bash=${BASH_VERSION:+yes}"\n')
    out = subprocess.run(
        boot_root.argv("provision"),
        env={**boot_root.env, "HOTFIX_SCRIPT": str(script)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "bash=yes" in out.stdout
    assert os.access(boot_root.run_dir / "hotfix.sh", os.X_OK)
