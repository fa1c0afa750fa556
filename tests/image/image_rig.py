"""The image, built from docker/Dockerfile with Debian's podman/buildah and no image
registry (issue 18): the stand-in bases, podman under build/image, the `image` fixture.

Two stand-in base images are made here, once, and cached by the hash of what goes in them:

- `SGLANG_BASE`: Debian 12 made by debootstrap (from the mirror this machine's apt uses),
  with python3, pip and venv, a `sglang` command that runs tests/sglang_standin.py (the
  test stand-in server), an importable `sglang` package with just the
  `ServerArgs.add_cli_args` the option-table step calls (tests/image/standin_base), and a
  local model directory. Debian's python3 carries the PEP 668 marker
  (/usr/lib/python3.11/EXTERNALLY-MANAGED), as the Ubuntu 24.04 bases of newer SGLang
  images do. What it does NOT prove: that SGLang's real image (CUDA, torch, its Python
  3.10/3.12, its pip) takes these build steps, that the real server starts (no GPU), or
  that Vast's real Instance Portal runs (scripts/build-image.sh builds on the real bases).
- `VAST_BASE`: an image holding only what the Dockerfile copies from it: /opt/portal-aio
  with Caddy at caddy_manager/caddy (this machine's Debian Caddy: Vast's is a build of its
  own, ai-dock/caddy, vast-ai/base-image Dockerfile `caddy_builder`) and an empty
  /.uv/python_install. There is no portal, so `instance_portal` ends EXITED ("not
  installed").

The wheels come from the host (scripts/image-wheelhouse.sh, docker/constraints.txt); the
build runs with `--network none`, and so do the containers. Podman's storage and
configuration live under build/image (runc, cgroupfs, ulimits this machine allows).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "image"
STANDIN = Path(__file__).resolve().parent / "standin_base"
WHEELHOUSE = ROOT / "build" / "wheelhouse"
TABLE = ROOT / "vast_sglang_launcher" / "plan" / "data" / "server-args-0.5.6.post2.json"
SUITE = "bookworm"
SUITE_PYTHON = "3.11"
"""The Python of the stand-in base (Debian 12's python3 is 3.11.2): the pinned wheels are
for it, not for the host's Python (Debian 13's is 3.13, whose wheels the base cannot use)."""
IN_CI = bool(os.environ.get("CI"))
TOOLS = ("podman", "debootstrap", "runc")
RECIPE = "sglang-base-1"
"""Part of the stand-in SGLang base's cache key: bump it when sglang_base() changes."""


def tools_or_skip() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0:
        missing.append("root")
    if missing:
        message = f"the image test needs {', '.join(missing)} (.ci/run installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (one-line or deb822 sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            suites = re.search(r"^Suites:(.*)$", stanza, re.M)
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            if suites and uris and SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[-2:-1] and SUITE in words:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def digest(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        for file in sorted(p for p in ([path] if path.is_file() else path.rglob("*"))):
            if file.is_file() and "__pycache__" not in file.parts:
                name = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
                h.update(str(name).encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Podman:
    """podman with its storage and configuration under build/image."""

    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def make(cls) -> Podman:
        BUILD.mkdir(parents=True, exist_ok=True)
        conf, storage, registries = (
            BUILD / "containers.conf",
            BUILD / "storage.conf",
            BUILD / "registries.conf",
        )
        # runc: crun 1.8.1 refuses this machine's cgroup layout; ulimits within what this
        # machine allows (no CAP_SYS_RESOURCE to raise them)
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'tmp_dir = "{BUILD / "tmp"}"\n'
        )
        storage.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{BUILD / "storage"}"\n'
            f'runroot = "{BUILD / "runroot"}"\n'
        )
        # no registry at all: every image here is localhost/...
        registries.write_text("unqualified-search-registries = []\n")
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_STORAGE_CONF": str(storage),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "TMPDIR": str(BUILD / "tmp"),
        }
        (BUILD / "tmp").mkdir(exist_ok=True)
        return cls(env)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,  # type: ignore[call-overload]
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0


def prune(podman: Podman, keep: str) -> None:
    """Remove the other tags of `keep`'s repository: the stale builds of this cache."""
    repository = keep.rsplit(":", 1)[0]
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
    stale = [t for t in listed.stdout.split() if t != keep and t.startswith(repository + ":")]
    if stale:
        podman("rmi", "--force", *stale, check=False)


def _import_rootfs(podman: Podman, rootfs: Path, tag: str, changes: list[str]) -> None:
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    with subprocess.Popen(
        ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE
    ) as tar:
        podman(*args, "-", tag, stdin=tar.stdout)
    assert tar.returncode == 0


PREPARE = "scripts/image-test-inputs.sh"
"""Makes the downloads below before the test session, which has no network (conftest)."""


def missing_input(what: str) -> None:
    message = f"the image test needs {what}: run {PREPARE} first (it downloads; .ci/run does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _debian_rootfs(download: bool = False) -> Path:
    """Debian 12 with python3, pip and venv, debootstrapped once (build/image/debian-*) by
    `prepare` (scripts/image-test-inputs.sh), outside the test session's network namespace."""
    rootfs = BUILD / f"debian-{SUITE}"
    if (rootfs / "usr" / "bin" / "python3").exists():
        return rootfs
    if not download:
        missing_input(f"a Debian {SUITE} root in {rootfs}")
    tmp = BUILD / f"debian-{SUITE}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-pip,python3-venv",
            SUITE,
            str(tmp),
            debian_mirror(),
        ],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    tmp.rename(rootfs)
    return rootfs


def _wheel(dest: Path) -> Path:
    """A tiny local wheel (pure Python) for the PIP_PACKAGES check."""
    import base64
    import zipfile

    name = "standin_extra-1.0-py3-none-any.whl"
    files = {
        "standin_extra.py": "VALUE = 'installed on first boot'\n",
        "standin_extra-1.0.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: standin-extra\nVersion: 1.0\n"
        ),
        "standin_extra-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        sha = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={sha.decode()},{len(text.encode())}")
    record.append("standin_extra-1.0.dist-info/RECORD,,")
    files["standin_extra-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(dest / name, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    return dest / name


def sglang_base(podman: Podman) -> str:
    """The stand-in SGLANG_BASE (see the module's docstring)."""
    # the recipe below: bump RECIPE when it changes
    key = digest(STANDIN, ROOT / "tests" / "sglang_standin.py", TABLE, extra=RECIPE)
    tag = f"localhost/vast-sglang-test/sglang-base:{key}"
    if podman.exists(tag):
        return tag
    started = time.monotonic()
    debian = _debian_rootfs()
    podman.timings["debootstrap_s"] = round(time.monotonic() - started, 1)
    rootfs = BUILD / "sglang-base.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["cp", "-a", str(debian), str(rootfs)], check=True)
    opt = rootfs / "opt" / "sglang-standin"
    (opt / "wheels").mkdir(parents=True)
    (opt / "model").mkdir()
    shutil.copy(ROOT / "tests" / "sglang_standin.py", opt / "sglang_standin.py")
    shutil.copy(TABLE, opt / TABLE.name)
    _wheel(opt / "wheels")
    (opt / "model" / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "hidden_size": 3584,
                "num_hidden_layers": 28,
            }
        )
    )
    command = rootfs / "usr" / "local" / "bin" / "sglang"
    shutil.copy(STANDIN / "sglang_command.py", command)
    command.chmod(0o755)
    version = next((rootfs / "usr" / "lib").glob("python3.*/EXTERNALLY-MANAGED")).parent.name
    package = rootfs / "usr" / "local" / "lib" / version / "dist-packages" / "sglang"
    (package / "srt").mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.5.6.post2"\n')
    (package / "srt" / "__init__.py").write_text("")
    shutil.copy(STANDIN / "server_args.py", package / "srt" / "server_args.py")
    _import_rootfs(podman, rootfs, tag, ["CMD /bin/bash"])
    shutil.rmtree(rootfs)
    prune(podman, tag)
    podman.timings["sglang_base_s"] = round(time.monotonic() - started, 1)
    return tag


def vast_base(podman: Podman) -> str:
    """The stand-in VAST_BASE: what the Dockerfile copies from Vast's base image."""
    caddy = shutil.which("caddy")
    assert caddy is not None, "caddy is not installed (.ci/run installs it)"
    key = digest(Path(caddy).resolve(), extra="vast-base-1")
    tag = f"localhost/vast-sglang-test/vast-base:{key}"
    if podman.exists(tag):
        return tag
    rootfs = BUILD / "vast-base.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "opt" / "portal-aio" / "caddy_manager").mkdir(parents=True)
    shutil.copy(caddy, rootfs / "opt" / "portal-aio" / "caddy_manager" / "caddy")
    (rootfs / ".uv" / "python_install").mkdir(parents=True)
    _import_rootfs(podman, rootfs, tag, [])
    shutil.rmtree(rootfs)
    return tag


@dataclass(frozen=True)
class Image:
    tag: str
    sglang_base: str
    podman: Podman


@pytest.fixture(scope="session")
def image() -> Iterator[Image]:
    """The image of this checkout, built once (and again only when its inputs change)."""
    tools_or_skip()
    podman = Podman.make()
    # one builder at a time (pytest-xdist workers, or two checkouts' runs): the others wait
    # here, then find what it made in the cache
    with open(BUILD / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tag, sglang = _build(podman)
    yield Image(tag, sglang, podman)
    (BUILD / "timings.json").write_text(json.dumps(podman.timings, indent=2) + "\n")


def _build(podman: Podman) -> tuple[str, str]:
    sglang, vast = sglang_base(podman), vast_base(podman)
    key = digest(
        ROOT / "docker",
        ROOT / ".dockerignore",
        ROOT / "pyproject.toml",
        ROOT / "vast_sglang_launcher",
        ROOT / "supervisor",
        extra=sglang + vast,
    )
    tag = f"localhost/vast-sglang-test/image:{key}"
    if not podman.exists(tag):
        started = time.monotonic()
        done = wheelhouse(offline=True)  # the pins are there (prepare); the launcher's wheel anew
        if done.returncode == 3:
            missing_input(f"the pinned wheels in {WHEELHOUSE}")
        assert done.returncode == 0, f"scripts/image-wheelhouse.sh failed:\n{done.stderr[-3000:]}"
        podman.timings["wheelhouse_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        podman(
            "build",
            "--format",
            "docker",
            "--network",
            "none",
            "--pull=never",
            "--file",
            "docker/Dockerfile",
            "--build-arg",
            f"SGLANG_BASE={sglang}",
            "--build-arg",
            f"VAST_BASE={vast}",
            "--build-arg",
            "WHEELHOUSE=build/wheelhouse",
            "--tag",
            tag,
            ".",
            cwd=ROOT,
            timeout=1800,
        )
        podman.timings["build_s"] = round(time.monotonic() - started, 1)
        prune(podman, tag)
    return tag, sglang


def wheelhouse(offline: bool) -> subprocess.CompletedProcess[str]:
    """scripts/image-wheelhouse.sh into WHEELHOUSE; `offline`: download nothing (exit 3 when
    the pinned wheels are not there yet) and build the launcher's wheel without build
    isolation (setuptools from this venv, the test extra's)."""
    return subprocess.run(
        [str(ROOT / "scripts" / "image-wheelhouse.sh"), str(WHEELHOUSE), SUITE_PYTHON],
        cwd=ROOT,
        env={**os.environ, "WHEELHOUSE_OFFLINE": "1" if offline else ""},
        capture_output=True,
        text=True,
        timeout=900,
    )


def prepare() -> None:
    """The image test's downloads, made with the network (scripts/image-test-inputs.sh): the
    Debian root of the stand-in SGLang base and the pinned wheels."""
    BUILD.mkdir(parents=True, exist_ok=True)
    print(f"image test inputs: Debian {SUITE} root in {_debian_rootfs(download=True)}")
    done = wheelhouse(offline=False)
    if done.returncode != 0:
        raise SystemExit(f"scripts/image-wheelhouse.sh failed:\n{done.stderr[-3000:]}")
    print(done.stdout.strip())


if __name__ == "__main__":
    prepare()
