"""APT_PACKAGES / PIP_PACKAGES: checking the lists, finding SGLang's Python, installing."""

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vast_sglang_launcher.boot.packages import (
    PackageError,
    interpreter_of,
    parse_apt_packages,
    parse_pip_packages,
    pip_python,
)
from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.settings import load_settings

FIRST_BOOT = ".first_boot_complete"


def fake_apt(boot_root):
    """apt-get that records `$DEBIAN_FRONTEND argv` and fails the subcommand in $FAKE_APT_FAIL."""
    calls = boot_root.tmp / "apt-calls"
    boot_root.tool(
        "apt-get",
        "#!/bin/sh\n"
        f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n'
        'if [ "$1" = "$FAKE_APT_FAIL" ]; then\n'
        '  echo "Reading package lists..."\n'
        '  echo "E: Unable to locate package nosuch"\n'
        "  exit 100\n"
        "fi\n"
        'echo "apt-get $1 done"\n',
    )
    return calls


def fake_python(boot_root, fail=False):
    """A 'python' that records its argv (and fails like pip when asked to). Asked where its
    stdlib is (packages.externally_managed), it answers as a venv's Python does."""
    calls = boot_root.tmp / "python-calls"
    body = (
        '#!/bin/sh\nif [ "$1" = "-I" ]; then echo \'{"venv": true, "stdlib": "/nonexistent"}\'; '
        f'exit 0; fi\necho "$*" >> {calls}\n'
    )
    if fail:
        body += 'echo "ERROR: No matching distribution found for nosuchpkg"\nexit 1\n'
    path = boot_root.tmp / "fakepy" / "python3"
    path.parent.mkdir()
    path.write_text(body)
    path.chmod(0o755)
    return path, calls


# --- checking the lists --------------------------------------------------------------------


def test_pip_lists_are_split_like_a_shell_but_kept_as_words():
    value = (
        "requests numpy<2 'torch>=2.4,<2.6' foo[bar]==1.* pkg!=1.0 pkg~=1.2 "
        "git+https://github.com/a/b.git#egg=b ./local/pkg /wheels/x-1-py3-none-any.whl"
    )
    assert parse_pip_packages(value) == [
        "requests",
        "numpy<2",
        "torch>=2.4,<2.6",
        "foo[bar]==1.*",
        "pkg!=1.0",
        "pkg~=1.2",
        "git+https://github.com/a/b.git#egg=b",
        "./local/pkg",
        "/wheels/x-1-py3-none-any.whl",
    ]
    assert parse_pip_packages("  ") == []


def test_apt_lists_accept_versions_releases_arches_and_debs():
    value = "curl libfoo=1.2-3ubuntu1~22.04 vim/jammy-backports gcc:amd64 ./x.deb"
    assert parse_apt_packages(value) == value.split()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("requests; touch /tmp/x", "shell syntax"),
        ("--index-url http://evil", "looks like an option"),
        ("-e .", "looks like an option"),
        ("requests>out.txt", "shell syntax"),
        ("$(id)", "shell syntax"),
        ("a|b", "shell syntax"),
        ("a&", "shell syntax"),
        ("`id`", "shell syntax"),
        ("~/x.whl", "shell syntax"),
        ("requests #comment", "shell syntax"),
        ("'unbalanced", "fix the quoting"),
    ],
)
def test_pip_lists_refuse_options_and_shell_syntax(value, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        parse_pip_packages(value)
    assert "PIP_PACKAGES" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("--allow-unauthenticated foo", "looks like an option"),
        ("-o Dpkg::Options::=--force-confnew", "looks like an option"),
        ("foo;reboot", "shell syntax"),
        ("foo$x", "shell syntax"),
        ("foo*", "shell syntax"),
        ("Foo_Bar@1", "not a Debian package name"),
    ],
)
def test_apt_lists_refuse_options_and_shell_syntax(value, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        parse_apt_packages(value)
    assert "APT_PACKAGES" in str(err.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [("PIP_PACKAGES", "requests; touch /tmp/x"), ("APT_PACKAGES", "--allow-unauthenticated foo")],
)
@pytest.mark.parametrize("command", [["provision"], ["entrypoint", "--", "touch", "CMD"]])
def test_a_bad_list_is_refused_with_exit_78_and_nothing_runs(boot_root, var, value, command):
    calls = fake_apt(boot_root)
    touched = boot_root.tmp / "hotfix-ran"
    hotfix = boot_root.script("hot.sh", f"touch {touched}\n")
    prov = boot_root.script("prov.sh", f"touch {touched}\n")
    out = boot_root.run(
        *command, HOTFIX_SCRIPT=str(hotfix), PROVISIONING_SCRIPT=str(prov), **{var: value}
    )

    assert out.returncode == 78
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"vast-sglang-launcher: {var}: ")
    assert "Traceback" not in out.stderr
    assert not touched.exists()
    assert not calls.exists()
    assert not (boot_root.tmp / "CMD").exists()
    assert list(boot_root.markers.iterdir()) == []


# --- apt-get -------------------------------------------------------------------------------


def test_apt_packages_update_then_install_without_recommends(boot_root):
    calls = fake_apt(boot_root)
    out = boot_root.run("provision", APT_PACKAGES="curl 'htop'")
    assert out.returncode == 0, out.stderr
    assert calls.read_text().splitlines() == [
        "noninteractive update",
        "noninteractive install -y --no-install-recommends curl htop",
    ]
    assert "apt-get install done" in out.stdout
    assert "apt-get install done" in (boot_root.logs / "first_boot.log").read_text()
    assert boot_root.marker(FIRST_BOOT).exists()


def test_apt_update_is_skipped_when_launch_exists(boot_root):
    calls = fake_apt(boot_root)
    boot_root.marker(".launch").touch()
    out = boot_root.run("provision", APT_PACKAGES="curl")
    assert out.returncode == 0, out.stderr
    assert calls.read_text().splitlines() == [
        "noninteractive install -y --no-install-recommends curl"
    ]


def test_failed_install_reports_last_lines_and_is_retried_next_boot(boot_root):
    calls = fake_apt(boot_root)
    out = boot_root.run("provision", APT_PACKAGES="nosuch", FAKE_APT_FAIL="install")
    assert out.returncode == 1
    assert (
        "first boot: failed (apt-get install failed with exit status 100: "
        "E: Unable to locate package nosuch)" in out.stdout
    )
    assert "Reading package lists" in out.stderr  # the last lines, in the error log line
    assert not boot_root.marker(FIRST_BOOT).exists()

    again = boot_root.run("provision", APT_PACKAGES="nosuch")
    assert again.returncode == 0, again.stderr
    assert boot_root.marker(FIRST_BOOT).exists()
    assert [c.split()[1] for c in calls.read_text().splitlines()] == [
        *("update", "install"),
        *("update", "install"),
    ]


def test_first_boot_runs_once(boot_root):
    calls = fake_apt(boot_root)
    assert boot_root.run("provision", APT_PACKAGES="curl").returncode == 0
    out = boot_root.run("provision", APT_PACKAGES="curl htop")
    assert "first boot: skipped" in out.stdout
    assert len(calls.read_text().splitlines()) == 2


def test_failed_apt_stops_pip_and_keeps_the_marker_away(boot_root):
    fake_apt(boot_root)
    python, py_calls = fake_python(boot_root)
    out = boot_root.run(
        "provision",
        APT_PACKAGES="curl",
        PIP_PACKAGES="requests",
        LAUNCHER_PIP_PYTHON=str(python),
        FAKE_APT_FAIL="update",
    )
    assert out.returncode == 1
    assert "apt-get update failed" in out.stdout
    assert not py_calls.exists()
    assert not boot_root.marker(FIRST_BOOT).exists()


# --- pip -----------------------------------------------------------------------------------


def test_pip_failure_is_reported_with_pips_last_line(boot_root):
    python, calls = fake_python(boot_root, fail=True)
    out = boot_root.run("provision", PIP_PACKAGES="nosuchpkg", LAUNCHER_PIP_PYTHON=str(python))
    assert out.returncode == 1
    assert calls.read_text().splitlines() == ["-m pip install nosuchpkg"]
    assert "ERROR: No matching distribution found for nosuchpkg" in out.stdout
    assert not boot_root.marker(FIRST_BOOT).exists()


def test_uv_is_used_when_present(boot_root):
    python, py_calls = fake_python(boot_root)
    uv_calls = boot_root.tmp / "uv-calls"
    boot_root.tool("uv", f'#!/bin/sh\necho "$*" >> {uv_calls}\n')
    out = boot_root.run(
        "provision", PIP_PACKAGES="requests 'numpy<2'", LAUNCHER_PIP_PYTHON=str(python)
    )
    assert out.returncode == 0, out.stderr
    assert uv_calls.read_text().splitlines() == [f"pip install --python {python} requests numpy<2"]
    assert not py_calls.exists()


def test_missing_sglang_is_a_clear_first_boot_failure(boot_root):
    out = boot_root.run("provision", PIP_PACKAGES="requests", SGLANG_COMMAND="no-such-sglang serve")
    assert out.returncode == 1
    assert "'no-such-sglang' (from SGLANG_COMMAND) is not on PATH" in out.stdout
    assert "LAUNCHER_PIP_PYTHON" in out.stdout
    assert not boot_root.marker(FIRST_BOOT).exists()


def _wheel(dest, name="boot_tinypkg", version="0.1.0"):
    """A minimal pure-Python wheel, written by hand (no build backend, no network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    dest.mkdir()
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_pip_packages_are_installed_into_the_venv_that_runs_sglang(boot_root):
    venv = boot_root.tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = boot_root.tmp / "wheels"
    _wheel(wheels)
    # SGLang's console script, as pip writes it into the venv.
    sglang = venv / "bin" / "sglang"
    sglang.write_text(f"#!{venv}/bin/python\nimport sys\nsys.exit(0)\n")
    sglang.chmod(0o755)

    out = boot_root.run(
        "provision",
        PIP_PACKAGES="boot-tinypkg==0.1.0",
        SGLANG_COMMAND="sglang serve",
        PATH=f"{venv / 'bin'}:{boot_root.env['PATH']}",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_INDEX="1",
        UV_FIND_LINKS=str(wheels),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "first boot: ok" in out.stdout
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import boot_tinypkg; print(boot_tinypkg.VALUE)"],
        capture_output=True,
        text=True,
    )
    assert imported.stdout == "42\n"
    # Not into the launcher's own Python.
    assert subprocess.run([sys.executable, "-c", "import boot_tinypkg"]).returncode != 0
    assert "boot-tinypkg" in (boot_root.logs / "first_boot.log").read_text().lower()
    assert boot_root.marker(FIRST_BOOT).exists()


# --- which Python ---------------------------------------------------------------------------


def _settings(**env):
    return load_settings(env)


def _exe(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_pip_python_from_the_sglang_script_shebang(tmp_path):
    _exe(tmp_path / "venv/bin/python", "")
    _exe(tmp_path / "bin/sglang", f"#!{tmp_path}/venv/bin/python\n")
    env = {"PATH": str(tmp_path / "bin")}
    assert pip_python(_settings(), env) == tmp_path / "venv/bin/python"


def test_pip_python_from_python_m(tmp_path):
    py = _exe(tmp_path / "bin/python3.12", "")
    settings = _settings(SGLANG_COMMAND="python3.12 -m sglang.launch_server")
    assert pip_python(settings, {"PATH": str(tmp_path / "bin")}) == py
    absolute = _settings(SGLANG_COMMAND=f"{py} -m sglang.launch_server")
    assert pip_python(absolute, {"PATH": ""}) == py


def test_pip_python_override(tmp_path):
    py = _exe(tmp_path / "custom/python", "")
    assert pip_python(_settings(LAUNCHER_PIP_PYTHON=str(py)), {"PATH": ""}) == py
    with pytest.raises(PackageError, match="LAUNCHER_PIP_PYTHON="):
        pip_python(_settings(LAUNCHER_PIP_PYTHON=str(tmp_path / "nope")), {"PATH": ""})


def test_interpreter_of_env_and_long_path_shebangs(tmp_path):
    py = _exe(tmp_path / "bin/python3", "")
    path = str(tmp_path / "bin")
    env_script = _exe(tmp_path / "s1", "#!/usr/bin/env python3\n")
    assert interpreter_of(env_script, path) == py
    long_form = _exe(
        tmp_path / "s2",
        "#!/bin/sh\n'''exec' \"/very long/venv/bin/python\" \"$0\" \"$@\"\n' '''\n",
    )
    assert interpreter_of(long_form, path) == tmp_path.joinpath("/very long/venv/bin/python")
    binary = tmp_path / "s3"
    binary.write_bytes(b"\x7fELF...")
    assert interpreter_of(binary, path) is None
    with pytest.raises(PackageError, match="no Python shebang"):
        _exe(tmp_path / "bin/sglang", "#!/bin/bash\necho hi\n")
        pip_python(_settings(), {"PATH": path})


# --- a Python that its distribution manages (PEP 668) ---------------------------------------


def _managed_python(root):
    """A real, non-venv Python whose stdlib directory carries EXTERNALLY-MANAGED, as Debian's
    and Ubuntu's do: this interpreter's binary copied under its own prefix, its stdlib linked
    in entry by entry, and pip linked into the directory that Python installs into (its
    sysconfig "purelib": lib/pythonX.Y/site-packages, or local/.../dist-packages on Debian)."""
    import os
    import shutil
    import sysconfig

    real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix})
    prefix = root / "sysroot"
    lib = prefix / "lib" / ver
    lib.mkdir(parents=True)
    (prefix / "bin").mkdir()
    binary = prefix / "bin" / ver
    shutil.copy2(real, binary)
    for entry in os.listdir(stdlib):
        # never the system's own marker: the test's is written below, into this prefix only
        if entry not in ("site-packages", "dist-packages", "EXTERNALLY-MANAGED"):
            (lib / entry).symlink_to(os.path.join(stdlib, entry))
    # a binary that finds libpython through $ORIGIN/../lib finds it here too
    for entry in os.listdir(os.path.join(sys.base_prefix, "lib")):
        if entry.startswith("libpython"):
            (prefix / "lib" / entry).symlink_to(os.path.join(sys.base_prefix, "lib", entry))
    marker = lib / "EXTERNALLY-MANAGED"
    assert not marker.exists() and not marker.is_symlink()
    marker.write_text(
        "[externally-managed]\nError=To install Python packages system-wide, try apt install\n"
    )
    probe = (
        "import json, sys, sysconfig; print(json.dumps([sys.prefix == sys.base_prefix, "
        "sysconfig.get_path('stdlib'), sysconfig.get_path('purelib')]))"
    )
    asked = subprocess.run([str(binary), "-c", probe], capture_output=True, text=True, check=True)
    not_venv, its_stdlib, purelib = json.loads(asked.stdout)
    assert (not_venv, its_stdlib) == (True, str(lib)), asked.stdout  # its own prefix, no venv
    site = Path(purelib)
    site.mkdir(parents=True, exist_ok=True)
    import pip

    (site / "pip").symlink_to(os.path.dirname(pip.__file__))
    subprocess.run([str(binary), "-c", "import pip"], check=True)  # the site dir is on its path
    return binary, marker, site


def _offline_pip(wheels):
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def test_pip_itself_refuses_the_managed_python(tmp_path):
    """The premise, with the real pip: without the override the install fails."""
    python, _, site = _managed_python(tmp_path)
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **_offline_pip(wheels)}
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "boot-tinypkg==0.1.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "externally-managed-environment" in done.stdout + done.stderr
    assert not (site / "boot_tinypkg").exists()


def test_pip_packages_go_into_an_externally_managed_sglang_python(boot_root):
    python, marker, site = _managed_python(boot_root.tmp)
    wheels = boot_root.tmp / "wheels"
    _wheel(wheels)
    sglang = boot_root.tmp / "sysroot" / "bin" / "sglang"  # the image's console script
    sglang.write_text(f"#!{python}\nimport sys\nsys.exit(0)\n")
    sglang.chmod(0o755)
    out = boot_root.run(
        "provision",
        PIP_PACKAGES="boot-tinypkg==0.1.0",
        SGLANG_COMMAND="sglang serve",
        PATH=f"{sglang.parent}:{boot_root.env['PATH']}",
        timeout=180,
        **_offline_pip(wheels),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "first boot: ok" in out.stdout
    said = f"{python} is externally managed (PEP 668 marker {marker})"
    assert said in out.stderr and "PIP_BREAK_SYSTEM_PACKAGES=1" in out.stderr
    assert said in (boot_root.logs / "first_boot.log").read_text()
    assert (site / "boot_tinypkg" / "__init__.py").is_file()
    imported = subprocess.run(
        [str(python), "-c", "import boot_tinypkg; print(boot_tinypkg.VALUE)"],
        capture_output=True,
        text=True,
    )
    assert imported.stdout == "42\n"
    assert boot_root.marker(FIRST_BOOT).exists()


def test_a_venv_is_not_externally_managed_and_nothing_is_said(boot_root):
    venv = boot_root.tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    from vast_sglang_launcher.boot.packages import externally_managed

    assert externally_managed(venv / "bin" / "python", {"PATH": "/usr/bin:/bin"}) is None
    python, marker, _ = _managed_python(boot_root.tmp)
    assert externally_managed(python, {"PATH": "/usr/bin:/bin"}) == marker
    assert externally_managed(boot_root.tmp / "no-python", {}) is None


def test_uv_gets_break_system_packages_for_a_managed_python(boot_root):
    python, _, _ = _managed_python(boot_root.tmp)
    uv_calls = boot_root.tmp / "uv-calls"
    boot_root.tool("uv", f'#!/bin/sh\necho "$*" >> {uv_calls}\n')
    out = boot_root.run("provision", PIP_PACKAGES="requests", LAUNCHER_PIP_PYTHON=str(python))
    assert out.returncode == 0, out.stderr
    assert uv_calls.read_text().splitlines() == [
        f"pip install --python {python} --break-system-packages requests"
    ]
    assert "(uv --break-system-packages)" in out.stderr
