"""Jupyter's command line, environment and kernelspec (pure: reads only the settings).

Checked in the packages the image pins (jupyter_server 2.21, jupyter_client 8.10,
jupyter_core 5.9, notebook 7.6):

- No token, no password: `IdentityProvider.token=''` turns Jupyter's own authentication
  off (jupyter_server `auth/identity.py`, `IdentityProvider.need_token`); the edge
  authenticates every request instead, and Jupyter listens on 127.0.0.1 only, so nothing
  outside the container reaches it but through the edge.
- Websockets keep Jupyter's own origin check (`base/websocket.py`,
  `WebSocketMixin.check_origin`: Origin must match Host). Caddy passes Host through, so a
  browser on the published port passes it; Vast's `allow_origin='*'` is not copied.
- `$JUPYTER_PATH` comes first of the data directories (jupyter_core `paths.jupyter_path`) and
  the first kernelspec of a name wins (jupyter_client `kernelspec.KernelSpecManager.
  find_kernel_specs`): the `python3` kernelspec written here replaces the one of Jupyter's own
  venv, so the default kernel (`python3`) is SGLang's Python, and `import sglang` works.
- `ContentsManager.preferred_dir` is an API path relative to `root_dir` (`services/contents/
  manager.py`); `root_dir` is `/`, as in Vast's `jupyter.sh`, so the whole file system is
  reachable and the file browser opens in `JUPYTER_DIR` (default `WORKSPACE`).
- notebook 7 serves `/terminals/<name>` (`notebook/app.py`), the path of Vast's "Jupyter
  Terminal" link, under `jupyter lab` too (it is an enabled server extension).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..settings import Settings

KERNEL_NAME = "python3"
"""The native kernel's name (jupyter_client `kernelspec.NATIVE_KERNEL_NAME`): notebooks and
JupyterLab's launcher use it by default."""
KERNEL_DISPLAY_NAME = "Python 3 (SGLang)"
HOST = "127.0.0.1"
SHELL = "/bin/bash"


def is_jupyter(name: str) -> bool:
    """An entry is Jupyter's when its name contains `jupyter` in any case, as Vast's
    `exit_portal.sh jupyter` greps /etc/portal.yaml (vast-ai/base-image,
    `ROOT/opt/supervisor-scripts/utils/exit_portal.sh`)."""
    return "jupyter" in name.lower()


@dataclass(frozen=True)
class JupyterPlace:
    """Where Jupyter listens (internal) and is published (external), from PORTAL_CONFIG."""

    external: int
    internal: int


def jupyter_place(entries: Sequence[tuple[str, int, int]]) -> JupyterPlace | None:
    """The first entry named Jupyter whose ports differ (the edge publishes it), from
    (name, external, internal) triples; None when there is none."""
    for name, external, internal in entries:
        if is_jupyter(name) and external != internal:
            return JupyterPlace(external=external, internal=internal)
    return None


def runtime_root(settings: Settings) -> Path:
    """Jupyter's files that last one run: the kernelspec and the kernels' connection files."""
    return settings.run_dir / "jupyter"


def data_dir(settings: Settings) -> Path:
    """The directory put first on JUPYTER_PATH (it holds `kernels/python3/kernel.json`)."""
    return runtime_root(settings) / "share"


def kernelspec_path(settings: Settings) -> Path:
    return data_dir(settings) / "kernels" / KERNEL_NAME / "kernel.json"


def preferred_dir(settings: Settings) -> Path:
    return settings.jupyter_dir or settings.workspace


def kernel_spec(python: Path) -> dict[str, object]:
    """A kernelspec that runs ipykernel in `python` (the Python that runs SGLang)."""
    return {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL_DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }


def kernel_spec_text(python: Path) -> str:
    return json.dumps(kernel_spec(python), indent=1) + "\n"


def jupyter_argv(settings: Settings, place: JupyterPlace) -> list[str]:
    """`jupyter lab` (or `notebook`) on 127.0.0.1:<internal port> with no auth of its own."""
    start = preferred_dir(settings).relative_to("/").as_posix()
    terminals = json.dumps({"shell_command": [SHELL]})
    return [
        str(settings.jupyter_bin),
        settings.jupyter_type,
        "--no-browser",
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={place.internal}",
        # another process on the port is an error, not a silent move to the next port
        "--ServerApp.port_retries=0",
        "--ServerApp.allow_root=True",
        "--IdentityProvider.token=",
        "--PasswordIdentityProvider.hashed_password=",
        "--ServerApp.trust_xheaders=True",
        "--ServerApp.root_dir=/",
        f"--ContentsManager.preferred_dir={start}",
        "--ContentsManager.allow_hidden=True",
        f"--ServerApp.terminado_settings={terminals}",
        "--KernelSpecManager.ensure_native_kernel=False",
    ]


def jupyter_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Jupyter's environment: the container's, with this image's kernelspec first on
    JUPYTER_PATH and the connection files (they hold the kernels' keys) under the run dir.
    Notebooks share the server's Hugging Face cache: the server runs with HOME=$WORKSPACE,
    so its cache is $WORKSPACE/.cache/huggingface unless HF_HOME says otherwise."""
    env = dict(environ)
    env.setdefault("HF_HOME", str(settings.workspace / ".cache" / "huggingface"))
    paths = [str(data_dir(settings))]
    if environ.get("JUPYTER_PATH"):
        paths.append(environ["JUPYTER_PATH"])
    env["JUPYTER_PATH"] = ":".join(paths)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime_root(settings) / "runtime")
    return env
