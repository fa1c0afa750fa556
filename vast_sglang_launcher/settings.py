"""Every knob of the launcher: one settings class, read from the environment once.

Each field's docstring is the user-facing documentation; the settings reference,
docs/settings.md, is generated from this class (``vast-sglang-launcher settings --markdown``)
and a test keeps the two equal. Nothing else in the package reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .values import check_header_token, check_model, check_secret, check_url, check_urls

# Variables whose empty value means something (an empty CUDA_VISIBLE_DEVICES hides every GPU);
# any other variable set to an empty string counts as unset.
_EMPTY_IS_A_VALUE = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})

# --- strict values ---------------------------------------------------------------------------
# Every value is parsed strictly: ASCII digits only, finite and bounded numbers, one boolean
# vocabulary, paths the kernel accepts, and one-line values where a newline could forge a log
# line. A bad value is one line naming the variable (`load_settings`), never a traceback.

BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
BOOL_VOCABULARY = "true, false, 1, 0, yes, no (any case)"
MAX_SECONDS = 30 * 24 * 3600.0
"""Largest value of a seconds setting (30 days): finite, and safe for every timer."""
PATH_MAX = 4095
NAME_MAX = 255
MAX_LINE = 8192
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_INT = re.compile(r"-?[0-9]{1,18}")
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?|\.[0-9]{1,9}")
_PORT = re.compile(r"[0-9]{1,5}")


def _strict_bool(value: Any) -> Any:
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in BOOL_WORDS:
            raise ValueError(f"expected one of {BOOL_VOCABULARY}")
        return BOOL_WORDS[word]
    return value


def _strict_int(value: Any) -> Any:
    if isinstance(value, str):
        if not _INT.fullmatch(value.strip()):
            raise ValueError("expected a whole number written with the ASCII digits 0-9")
        return int(value.strip())
    return value


def _strict_seconds(value: Any) -> Any:
    if isinstance(value, str):
        if not _SECONDS.fullmatch(value.strip()):
            raise ValueError(
                "expected a number of seconds written with the ASCII digits 0-9 and an "
                "optional decimal point (e.g. 30 or 2.5)"
            )
        return float(value.strip())
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number of seconds")
    return value


def _no_control(value: str) -> None:
    if _CONTROL.search(value):
        raise ValueError("it contains a newline or another control character")


def _one_line(value: str) -> str:
    _no_control(value)
    if len(value) > MAX_LINE:
        raise ValueError(f"it is longer than {MAX_LINE} characters")
    return value


def _check_path(value: Any) -> Any:
    text = str(value) if isinstance(value, (str, Path)) else None
    if text is None:
        return value
    _no_control(text)
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX:
        raise ValueError(f"a path may have at most {PATH_MAX} bytes")
    if any(len(part) > NAME_MAX for part in raw.split(b"/")):
        raise ValueError(f"each name in a path may have at most {NAME_MAX} bytes")
    return value


def _url_or_path(value: str) -> str:
    _one_line(value)
    if value.strip().lower().startswith(("http://", "https://")):
        check_url(value.strip())
    elif "://" not in value:
        _check_path(value.strip())
    return value


def _path_like(value: str) -> str:
    _check_path(value)
    return value


def parse_ports(text: str) -> frozenset[int]:
    """Port numbers separated by commas or spaces (ASCII digits, 1-65535); ValueError names
    the first item that is not one."""
    ports = set()
    for item in re.split(r"[ \t\n,]+", text.strip()):
        if not item:
            continue
        if not _PORT.fullmatch(item) or not 1 <= int(item) <= 65535:
            shown = item if len(item) <= 20 else item[:20] + "..."
            raise ValueError(
                f"{shown!r} is not a port number (1-65535 in ASCII digits); list external "
                "ports separated by commas or spaces"
            )
        ports.add(int(item))
    return frozenset(ports)


Bool = Annotated[bool, BeforeValidator(_strict_bool)]
Int = Annotated[int, BeforeValidator(_strict_int)]
Seconds = Annotated[
    float, BeforeValidator(_strict_seconds), Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)
]
Line = Annotated[str, AfterValidator(_one_line)]
SafePath = Annotated[Path, BeforeValidator(_check_path)]
Source = Annotated[str, AfterValidator(_url_or_path)]
PathLike = Annotated[str, AfterValidator(_path_like)]
ModelName = Annotated[
    str, AfterValidator(_one_line), AfterValidator(_path_like), AfterValidator(check_model)
]
Url = Annotated[str, AfterValidator(_one_line), AfterValidator(check_url)]
Urls = Annotated[str, AfterValidator(_one_line), AfterValidator(check_urls)]
HeaderToken = Annotated[
    SecretStr, BeforeValidator(lambda v: check_header_token(v) if isinstance(v, str) else v)
]
Secret = Annotated[
    SecretStr, BeforeValidator(lambda v: check_secret(v) if isinstance(v, str) else v)
]


DEFAULT_SERVER_PORT = 18000
"""The server's port unless LAUNCHER_SERVER_PORT says otherwise: the one home of 18000 (the
plan, the default PORTAL_CONFIG and the docs follow it)."""


class Settings(BaseSettings):
    """The launcher's configuration. Environment names are given by each field's alias."""

    model_config = SettingsConfigDict(
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    # --- what to serve (plan) -------------------------------------------------------------
    model: ModelName | None = Field(
        None, validation_alias=AliasChoices("SGLANG_MODEL", "MODEL_NAME")
    )
    """Model to serve: a Hugging Face repo id (`Org/Name`) or a local directory. A pasted hub
    page URL (`https://huggingface.co/Org/Name`) is read as its repo id, with a note in the
    plan; any other malformed id is refused. `MODEL_NAME` is accepted as a fallback;
    `SGLANG_MODEL` wins when both are set. Unset: the server is not started."""

    sglang_args: str = Field("", validation_alias="SGLANG_ARGS")
    """Extra SGLang options, split like a shell would split them (never run by a shell)."""

    sglang_args_file: SafePath = Field(
        Path("/etc/sglang-args.conf"), validation_alias="SGLANG_ARGS_FILE"
    )
    """File of extra SGLang options appended after `SGLANG_ARGS`; `#` comments, several lines
    and quoted values allowed. A missing file is fine."""

    auto_parallel: Bool = Field(
        True, validation_alias=AliasChoices("AUTO_PARALLEL", "USE_ALL_GPUS")
    )
    """Spread the model over every visible GPU (tensor parallel, plus data parallel when the
    heads do not divide) unless you chose a parallel layout yourself. `USE_ALL_GPUS` is the
    older name."""

    sglang_command: Line = Field("sglang serve", validation_alias="SGLANG_COMMAND")
    """Command that starts the server, before its options (e.g. `python3 -m
    sglang.launch_server`)."""

    sglang_host: Line = Field("127.0.0.1", validation_alias="SGLANG_HOST")
    """Address the server listens on (the auth proxy publishes it)."""

    sglang_port: Int = Field(
        DEFAULT_SERVER_PORT,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("LAUNCHER_SERVER_PORT", "SGLANG_PORT"),
    )
    """Port the server listens on (published as 8000 by the auth proxy). `SGLANG_PORT`, the
    old name, still works with a warning, and is then not passed to the server: SGLang
    reads `SGLANG_PORT` itself, as the first port of its internal sockets."""

    workspace: SafePath = Field(Path("/workspace"), validation_alias="WORKSPACE")
    """Working directory and HOME of the server; caches go here."""

    gpu_count: Int | None = Field(None, ge=0, le=1024, validation_alias="GPU_COUNT")
    """Number of GPUs to assume when NVML is unavailable (ignored when NVML answers)."""

    cuda_visible_devices: Line | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    """GPUs the server may use: indices or GPU/MIG UUIDs, comma-separated; empty hides all."""

    nvidia_visible_devices: Line | None = Field(None, validation_alias="NVIDIA_VISIBLE_DEVICES")
    """GPUs given to the container (`all`, `none`, `void`, indices or UUIDs); used when
    `CUDA_VISIBLE_DEVICES` is unset."""

    nnodes: Int | None = Field(None, ge=1, le=65536, validation_alias="SGLANG_NNODES")
    """Number of machines serving one model together (multi-node); default from
    LeaderWorkerSet (`LWS_GROUP_SIZE`) or SLURM (`SLURM_NNODES`), else 1."""

    node_rank: Int | None = Field(None, ge=0, le=65535, validation_alias="SGLANG_NODE_RANK")
    """This machine's rank among `SGLANG_NNODES` (0 is the head, the only one that serves
    the API); default `LWS_WORKER_INDEX` or `SLURM_NODEID`, else 0."""

    dist_init_addr: Line | None = Field(None, validation_alias="SGLANG_DIST_INIT_ADDR")
    """`host:port` of the head node for multi-node serving; default `LWS_LEADER_ADDRESS` or
    the first host of `SLURM_JOB_NODELIST`, with `LAUNCHER_DIST_INIT_PORT`."""

    dist_init_port: Int = Field(20000, ge=1, le=65535, validation_alias="LAUNCHER_DIST_INIT_PORT")
    """Port added to a head address found through LeaderWorkerSet or SLURM."""

    lws_leader_address: Line | None = Field(None, validation_alias="LWS_LEADER_ADDRESS")
    """Set by Kubernetes LeaderWorkerSet: the leader pod's address (the head node)."""

    lws_group_size: Int | None = Field(None, ge=1, le=65536, validation_alias="LWS_GROUP_SIZE")
    """Set by LeaderWorkerSet: pods in the group (the number of nodes)."""

    lws_worker_index: Int | None = Field(None, ge=0, le=65535, validation_alias="LWS_WORKER_INDEX")
    """Set by LeaderWorkerSet: this pod's index in the group (0 is the leader)."""

    slurm_nnodes: Int | None = Field(None, ge=1, le=65536, validation_alias="SLURM_NNODES")
    """Set by SLURM: nodes in the job."""

    slurm_nodeid: Int | None = Field(None, ge=0, le=65535, validation_alias="SLURM_NODEID")
    """Set by SLURM: this node's index in the job."""

    slurm_job_nodelist: Line | None = Field(None, validation_alias="SLURM_JOB_NODELIST")
    """Set by SLURM: the job's hosts, compressed (`node[01-04],gpu7`); the first is the head."""

    hf_token: HeaderToken | None = Field(
        None, validation_alias=AliasChoices("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    )
    """Hugging Face token for gated models (also used by the weight prefetch and to read the
    model's config.json). Like every token, printable ASCII: a value ending in a space or a
    line break is refused (exit 78), never stripped silently."""

    hf_endpoint: Url = Field("https://huggingface.co", validation_alias="HF_ENDPOINT")
    """Hugging Face hub address."""

    hf_home: SafePath | None = Field(None, validation_alias="HF_HOME")
    """Hugging Face home; default `$WORKSPACE/.cache/huggingface`. A relative path is read
    against `WORKSPACE`, once, for the prefetch and the server alike."""

    hf_hub_cache: SafePath | None = Field(None, validation_alias="HF_HUB_CACHE")
    """Hugging Face model cache; default `$HF_HOME/hub`. A relative path is read against
    `WORKSPACE`."""

    hf_hub_offline: Bool = Field(False, validation_alias="HF_HUB_OFFLINE")
    """Never contact the hub: no weight prefetch, and config.json only from a local dir or the
    HF cache."""

    option_table: SafePath = Field(
        Path("/etc/vast-sglang-launcher/sglang-options.json"),
        validation_alias="LAUNCHER_OPTION_TABLE",
    )
    """SGLang option table. Set, it is used (and must exist); unset, the table written at image
    build at this default path, else the shipped snapshot of the installed sglang's version
    (or the nearest older one)."""

    model_info_timeout: Seconds = Field(5.0, validation_alias="LAUNCHER_MODEL_INFO_TIMEOUT")
    """Seconds allowed to fetch the model's config.json from the hub."""

    # --- cold start (weights, caches, load phases) ---------------------------------------------
    prefetch: Bool = Field(True, validation_alias="LAUNCHER_PREFETCH")
    """Download the model's weights from the hub at boot, beside the first-boot installs and
    the provisioning script, so that the server starts on a complete download. Off: SGLang
    downloads them itself when it starts."""

    prefetch_connections: Int = Field(
        8, ge=1, le=64, validation_alias="LAUNCHER_PREFETCH_CONNECTIONS"
    )
    """Files the prefetch downloads at the same time."""

    stall_timeout: Seconds = Field(600.0, validation_alias="LAUNCHER_STALL_TIMEOUT")
    """Seconds without server output and without download progress, while the server
    starts, after which the launcher warns that the start looks stalled (naming the phase)."""

    stall_action: Literal["warn", "restart"] = Field(
        "warn", validation_alias="LAUNCHER_STALL_ACTION"
    )
    """What a stalled start leads to: `warn` (a log line and status.json only) or `restart`
    (the server is stopped and started again, as after a failed start)."""

    # --- supervising the server (run) ---------------------------------------------------------
    startup_timeout: Seconds = Field(3600.0, validation_alias="LAUNCHER_STARTUP_TIMEOUT")
    """Seconds a start may take (download, load, warm-up) before it counts as failed."""

    startup_period: Seconds = Field(0.25, validation_alias="LAUNCHER_STARTUP_PERIOD")
    """Seconds between readiness probes while the server starts."""

    liveness_period: Seconds = Field(15.0, validation_alias="LAUNCHER_LIVENESS_PERIOD")
    """Seconds between `/health` probes once the server is ready."""

    liveness_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_LIVENESS_TIMEOUT")
    """Seconds one liveness probe may take (SGLang's own health check takes up to 20 s)."""

    liveness_failures: Int = Field(3, ge=1, le=1000, validation_alias="LAUNCHER_LIVENESS_FAILURES")
    """Consecutive failed liveness probes that make the launcher restart the server."""

    backoff_initial: Seconds = Field(2.0, validation_alias="LAUNCHER_BACKOFF_INITIAL")
    """Seconds before the first restart; doubles on each restart up to `LAUNCHER_BACKOFF_MAX`."""

    backoff_max: Seconds = Field(120.0, validation_alias="LAUNCHER_BACKOFF_MAX")
    """Longest wait between restarts, in seconds."""

    backoff_reset: Seconds = Field(600.0, validation_alias="LAUNCHER_BACKOFF_RESET")
    """Seconds of healthy serving after which the restart delay starts again from the initial."""

    start_retries: Int = Field(3, ge=0, le=1000, validation_alias="LAUNCHER_START_RETRIES")
    """Restarts tried when the server fails before it was ever ready; then the launcher gives
    up (exit 78)."""

    stop_timeout: Seconds = Field(6.0, validation_alias="LAUNCHER_STOP_TIMEOUT")
    """Seconds one stop may take before the server's whole tree is killed: SGLang's main
    process alone gets SIGTERM and drains the requests in flight (it looks every 5 s; in
    worker mode the gateway's deregistration comes first, within a share of this). The
    default fits `docker stop`'s 10 s (supervisord and the edge take up to 4 s more); for a
    longer drain raise it and give the container 4 s more (`docker run --stop-timeout N`)."""

    flap_threshold: Int = Field(5, ge=1, le=100_000, validation_alias="LAUNCHER_FLAP_THRESHOLD")
    """Restarts within the last hour past which the launcher warns that the server is
    flapping (status.json and `status` always show the count)."""

    tail_lines: Int = Field(40, ge=1, le=10000, validation_alias="LAUNCHER_TAIL_LINES")
    """Server output lines kept to explain a failure."""

    log_dir: SafePath = Field(Path("/var/log/portal"), validation_alias="LAUNCHER_LOG_DIR")
    """Directory of the log files (sglang.log, provisioning and hotfix logs)."""

    log_max_bytes: Int = Field(
        100 * 1024 * 1024, ge=4096, le=1 << 40, validation_alias="LAUNCHER_LOG_MAX_BYTES"
    )
    """Size in bytes at which a log file the launcher writes (sglang.log, first_boot.log,
    provisioning.log, hotfix.log) is rotated to `.1`."""

    log_backups: Int = Field(3, ge=0, le=100, validation_alias="LAUNCHER_LOG_BACKUPS")
    """Rotated copies kept of each log file (`.1` is the newest); 0 keeps none."""

    log_format: Literal["console", "json"] = Field(
        "console", validation_alias="LAUNCHER_LOG_FORMAT"
    )
    """Format of the launcher's own log lines: `console` or `json`."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LAUNCHER_LOG_LEVEL"
    )
    """Least severe launcher log level printed."""

    run_dir: SafePath = Field(
        Path("/run/vast-sglang-launcher"), validation_alias="LAUNCHER_RUN_DIR"
    )
    """Directory of status.json and the launcher's pid files."""

    marker_dir: SafePath = Field(Path("/"), validation_alias="LAUNCHER_MARKER_DIR")
    """Directory of the boot markers (`.first_boot_complete`, `.provisioning`, ...)."""

    # --- boot (entrypoint, provision) -----------------------------------------------------
    hotfix_script: Source | None = Field(None, validation_alias="HOTFIX_SCRIPT")
    """URL or path of a script run early on every boot."""

    provisioning_script: Source | None = Field(None, validation_alias="PROVISIONING_SCRIPT")
    """URL or path of a script run once, before the server starts."""

    apt_packages: str = Field("", validation_alias="APT_PACKAGES")
    """Debian packages installed on first boot (space-separated)."""

    pip_packages: str = Field("", validation_alias="PIP_PACKAGES")
    """Python packages installed on first boot into SGLang's Python (space-separated)."""

    pip_python: SafePath | None = Field(None, validation_alias="LAUNCHER_PIP_PYTHON")
    """Python that `PIP_PACKAGES` go into; default the interpreter of `SGLANG_COMMAND`."""

    download_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_DOWNLOAD_TIMEOUT")
    """Seconds allowed to connect to, and between reads from, a script URL."""

    download_retries: Int = Field(3, ge=0, le=100, validation_alias="LAUNCHER_DOWNLOAD_RETRIES")
    """Retries of a script download after a network error or a 5xx answer."""

    download_max_bytes: Int = Field(
        10 * 1024 * 1024, ge=1, le=1 << 30, validation_alias="LAUNCHER_DOWNLOAD_MAX_BYTES"
    )
    """Largest script accepted, in bytes."""

    portal_config: str | None = Field(None, validation_alias="PORTAL_CONFIG")
    """Published ports, `host:external:internal:path:name|...`; default publishes the SGLang
    API 8000->18000, the Instance Portal 1111->11111 and Jupyter 8080->18080 (and the gateway
    8010->18010 when `LAUNCHER_RUN_GATEWAY` is true)."""

    # --- Jupyter (jupyter) -----------------------------------------------------------------
    jupyter_type: Literal["lab", "notebook"] = Field("lab", validation_alias="JUPYTER_TYPE")
    """Jupyter's interface: `lab` (JupyterLab) or `notebook` (Notebook 7). It runs when a
    `PORTAL_CONFIG` entry named Jupyter publishes it (the default does)."""

    jupyter_bin: SafePath = Field(
        Path("/opt/jupyter/venv/bin/jupyter"), validation_alias="JUPYTER_BIN"
    )
    """The `jupyter` command of Jupyter's own virtual environment."""

    jupyter_dir: SafePath | None = Field(None, validation_alias="JUPYTER_DIR")
    """Directory Jupyter's file browser opens in (the whole file system stays reachable);
    default `WORKSPACE`."""

    supervisord_config: SafePath = Field(
        Path("/etc/supervisor/supervisord.conf"), validation_alias="LAUNCHER_SUPERVISORD_CONFIG"
    )
    """supervisord configuration that `entrypoint` starts."""

    # --- the auth edge (edge) -------------------------------------------------------------
    open_button_token: Secret | None = Field(None, validation_alias="OPEN_BUTTON_TOKEN")
    """Token accepted as `Authorization: Bearer`, as a `?token=` link, and as the default
    Basic password."""

    web_username: Line = Field("vastai", validation_alias="WEB_USERNAME")
    """User name for HTTP Basic authentication."""

    web_password: Secret | None = Field(None, validation_alias="WEB_PASSWORD")
    """Password for HTTP Basic authentication; default `OPEN_BUTTON_TOKEN`."""

    enable_auth: Bool = Field(True, validation_alias="ENABLE_AUTH")
    """Require authentication on every published port."""

    auth_exclude: str = Field("", validation_alias="AUTH_EXCLUDE")
    """External ports served without authentication (comma or space separated)."""

    auth_link_login: Bool = Field(True, validation_alias="AUTH_LINK_LOGIN")
    """Accept `?token=` links and the cookie a link sets. `false`: only `Authorization`
    (Bearer or Basic) gets in; no cookie is set or accepted."""

    auth_cookie_max_age: Int = Field(
        12 * 3600, ge=60, le=30 * 24 * 3600, validation_alias="AUTH_COOKIE_MAX_AGE"
    )
    """Seconds a browser keeps the cookie that a token link sets (60 to 2592000)."""

    enable_https: Bool = Field(False, validation_alias="ENABLE_HTTPS")
    """Serve the published ports over TLS with `LAUNCHER_TLS_CERT` and `LAUNCHER_TLS_KEY`."""

    tls_cert: SafePath = Field(Path("/etc/instance.crt"), validation_alias="LAUNCHER_TLS_CERT")
    """TLS certificate used when `ENABLE_HTTPS` is true."""

    tls_key: SafePath = Field(Path("/etc/instance.key"), validation_alias="LAUNCHER_TLS_KEY")
    """TLS private key used when `ENABLE_HTTPS` is true."""

    caddy_bin: Line = Field("caddy", validation_alias="LAUNCHER_CADDY_BIN")
    """Caddy executable that `edge` runs."""

    portal_yaml: SafePath = Field(Path("/etc/portal.yaml"), validation_alias="LAUNCHER_PORTAL_YAML")
    """Application list of the Instance Portal, written by `edge` from `PORTAL_CONFIG` on every
    start (the portal waits for this file)."""

    # --- scale-out: a gateway in front of several instances (scaleout) --------------------
    gateway_url: Url | None = Field(None, validation_alias="LAUNCHER_GATEWAY_URL")
    """SGLang gateway (smg, or sglang-router) to join as a worker, e.g. `http://1.2.3.4:40510` (the
    gateway instance's published port): the launcher registers the server there once it is
    ready and deregisters it before every stop or restart. Unset: no gateway."""

    gateway_token: HeaderToken | None = Field(None, validation_alias="LAUNCHER_GATEWAY_TOKEN")
    """Bearer token sent to the gateway (the gateway instance's `OPEN_BUTTON_TOKEN` when it runs
    behind its auth edge); default this instance's `OPEN_BUTTON_TOKEN`."""

    worker_url: Url | None = Field(None, validation_alias="LAUNCHER_WORKER_URL")
    """URL at which the gateway reaches this server; default
    `http://$PUBLIC_IPADDR:$VAST_TCP_PORT_8000` (https with `ENABLE_HTTPS`)."""

    public_ipaddr: Line | None = Field(None, validation_alias="PUBLIC_IPADDR")
    """Public address of the machine (set by Vast); part of the default `LAUNCHER_WORKER_URL`."""

    vast_tcp_port_8000: Int | None = Field(
        None, ge=1, le=65535, validation_alias="VAST_TCP_PORT_8000"
    )
    """Public port mapped to the API's port 8000 (set by Vast); part of the default
    `LAUNCHER_WORKER_URL`."""

    container_id: Line | None = Field(None, validation_alias="CONTAINER_ID")
    """This instance's id (set by Vast): a label of the worker in the gateway, and the worker's
    id in Vast Serverless reports."""

    gateway_timeout: Seconds = Field(5.0, validation_alias="LAUNCHER_GATEWAY_TIMEOUT")
    """Seconds one request to the gateway may take."""

    gateway_drain_timeout: Seconds = Field(10.0, validation_alias="LAUNCHER_GATEWAY_DRAIN_TIMEOUT")
    """Seconds a stop or restart waits for the gateway to stop listing this worker before the
    server gets SIGTERM; never more than its share of `LAUNCHER_STOP_TIMEOUT` (what is left
    beyond the 6 s an idle server needs, or a quarter, whichever is more): raise both."""

    gateway_register_timeout: Seconds = Field(
        30.0, validation_alias="LAUNCHER_GATEWAY_REGISTER_TIMEOUT"
    )
    """Seconds after a registration for the gateway to list this worker before it is sent
    again (the gateway checks the worker in the background)."""

    gateway_retry_max: Seconds = Field(30.0, validation_alias="LAUNCHER_GATEWAY_RETRY_MAX")
    """Longest wait between registration attempts while the gateway is unreachable (the wait
    starts at 0.5 s and doubles)."""

    gateway_recheck: Seconds = Field(30.0, validation_alias="LAUNCHER_GATEWAY_RECHECK")
    """Seconds between checks that the gateway still lists this worker; it registers again
    when the gateway forgot it (e.g. after the gateway restarted)."""

    run_gateway: Bool = Field(False, validation_alias="LAUNCHER_RUN_GATEWAY")
    """Run SGLang's gateway (smg, the Shepherd Model Gateway) in this instance, as the
    supervisord program `gateway`, published behind the auth edge on port 8010
    (`LAUNCHER_GATEWAY_PORT` inside)."""

    gateway_port: Int = Field(18010, ge=1, le=65535, validation_alias="LAUNCHER_GATEWAY_PORT")
    """Port the gateway listens on inside the container (the edge publishes it as 8010)."""

    gateway_workers: Urls = Field("", validation_alias="LAUNCHER_GATEWAY_WORKERS")
    """Worker URLs the gateway starts with (space or comma separated); workers can also join
    at run time with `LAUNCHER_GATEWAY_URL`."""

    gateway_args: Line = Field("", validation_alias="LAUNCHER_GATEWAY_ARGS")
    """Extra gateway options (e.g. `--policy round_robin`), split like a shell would."""

    gateway_command: Line = Field("smg launch", validation_alias="LAUNCHER_GATEWAY_COMMAND")
    """Command that starts the gateway, before its options (`python3 -m
    sglang_router.launch_router` for sglang-router)."""

    # --- Vast Serverless: Vast's worker in front of the server (serverless) ------------------
    serverless: Bool = Field(False, validation_alias="SERVERLESS")
    """Vast Serverless (set by Vast on a serverless endpoint's workers): run Vast's worker
    (the supervisord program `serverless`) in front of the server, and skip what serverless
    workers do not need (the Instance Portal)."""

    report_addr: Line | None = Field(None, validation_alias="REPORT_ADDR")
    """Vast's autoscaler address(es), comma separated (set by Vast): where the worker fetches
    the key that signs requests and reports load, loaded and error."""

    worker_port: Int = Field(3000, ge=1, le=65535, validation_alias="WORKER_PORT")
    """Port Vast's worker listens on (set by Vast); clients reach it at
    `$PUBLIC_IPADDR:$VAST_TCP_PORT_<WORKER_PORT>`. The next port is its internal webhook port."""

    master_token: SecretStr | None = Field(None, validation_alias="MASTER_TOKEN")
    """The worker's token in its reports to the autoscaler (set by Vast)."""

    serverless_python: Line = Field("python3", validation_alias="LAUNCHER_SERVERLESS_PYTHON")
    """Python with the `vastai` package that runs Vast's worker (in the image its own venv,
    `/opt/vastai/venv/bin/python`)."""

    serverless_max_queue: Seconds = Field(30.0, validation_alias="LAUNCHER_SERVERLESS_MAX_QUEUE")
    """Seconds of estimated queue time above which the worker turns requests away (429), so the
    autoscaler sends them elsewhere (the worker framework's `max_queue_time`)."""

    @field_validator("auth_exclude")
    @classmethod
    def _auth_exclude_ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @field_validator("sglang_command")
    @classmethod
    def _sglang_command_splits(cls, value: str) -> str:
        # Split here, once: every user reads `sglang_command_words` (plan, packages).
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(
                f"it cannot be split into words ({exc}): balance its quotes or escape them"
            ) from None
        return value

    @model_validator(mode="after")
    def _gateway_token_ascii(self) -> Settings:
        # OPEN_BUTTON_TOKEN is the gateway's Bearer token when LAUNCHER_GATEWAY_TOKEN is unset:
        # then it goes into an HTTP header, which carries ASCII only.
        token = self.open_button_token
        if (
            self.gateway_url
            and self.gateway_token is None
            and token is not None
            and not token.get_secret_value().isascii()
        ):
            raise ValueError(
                "OPEN_BUTTON_TOKEN holds a character that is not ASCII and is the token sent "
                "to LAUNCHER_GATEWAY_URL; set LAUNCHER_GATEWAY_TOKEN (ASCII) or an ASCII "
                "OPEN_BUTTON_TOKEN"
            )
        return self

    @model_validator(mode="after")
    def _hub_dirs_absolute(self) -> Settings:
        # A relative HF_HOME / HF_HUB_CACHE is read once, against WORKSPACE (the server's
        # working directory), so that the prefetch, `plan` and the server use one cache.
        for name in ("hf_home", "hf_hub_cache"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, self.workspace / value)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() hands over the environment it was given, so tests are hermetic.
        return (init_settings,)

    # --- derived values ---------------------------------------------------------------------
    @property
    def sglang_command_words(self) -> tuple[str, ...]:
        """SGLANG_COMMAND split into words like a POSIX shell (its validator checked that it
        splits): the program and its first words, before the server's options."""
        return tuple(shlex.split(self.sglang_command))

    @property
    def hub_cache(self) -> Path:
        """Where the Hugging Face cache keeps downloaded models."""
        if self.hf_hub_cache is not None:
            return self.hf_hub_cache
        home = self.hf_home or self.workspace / ".cache" / "huggingface"
        return home / "hub"

    @property
    def auth_exclude_ports(self) -> frozenset[int]:
        """The external ports listed in AUTH_EXCLUDE."""
        return parse_ports(self.auth_exclude)

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status.json"

    def marker(self, name: str) -> Path:
        """Path of a boot marker such as `.provisioning`."""
        return self.marker_dir / name


DEPRECATED_NAMES = {"SGLANG_PORT": "LAUNCHER_SERVER_PORT"}
"""Old names of settings that collide with a variable SGLang reads (0.5.6.post2 utils/
common.py and shm_broadcast.py; 0.5.23 environ.py `SGLANG_PORT`): still read, with a
warning, while the new name is unset."""


def deprecated_in_use(environ: Mapping[str, str]) -> dict[str, str]:
    """Old name -> new name, for each old name that gives a setting its value here."""
    return {
        old: new
        for old, new in DEPRECATED_NAMES.items()
        if environ.get(old, "").strip() and not environ.get(new, "").strip()
    }


def deprecation_warnings(environ: Mapping[str, str]) -> list[str]:
    return [
        f"{old} is deprecated as the launcher's setting (SGLang reads {old} itself, for its "
        f"internal ports): set {new} instead; {old} is not passed to the server"
        for old, new in deprecated_in_use(environ).items()
    ]


def env_name(field: str) -> str:
    """The environment variable a field is read from (its first alias)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return alias if isinstance(alias, str) else field.upper()


def _settings_data(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` that name a setting and are set (empty counts as unset)."""
    names = {env_name(f) for f in Settings.model_fields}
    for f in Settings.model_fields.values():
        if isinstance(f.validation_alias, AliasChoices):
            names.update(c for c in f.validation_alias.choices if isinstance(c, str))
    return {k: v for k, v in env.items() if k in names and (v.strip() or k in _EMPTY_IS_A_VALUE)}


def inspect_settings(environ: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The settings with every bad value left at its default, and for each bad variable the
    reason (`settings` prints every value, marks the bad ones, then exits 78)."""
    data = _settings_data(environ)
    bad = {k: "it contains bytes that are not UTF-8" for k, v in data.items() if not _is_utf8(v)}
    for _ in range(len(Settings.model_fields) + 1):
        try:
            return Settings.model_validate({k: v for k, v in data.items() if k not in bad}), bad
        except ValidationError as exc:
            for err in exc.errors():
                var = _error_var(err)
                msg = str(err["msg"]).removeprefix("Value error, ")
                bad.setdefault(
                    var,
                    f"expected one of {BOOL_VOCABULARY}" if err["type"].startswith("bool") else msg,
                )
            if all(_error_var(e) not in data for e in exc.errors()):
                break  # a problem no single variable causes: leave it to load_settings
    return Settings.model_validate({}), bad


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the variable and the fix
    (one line per bad value, the value shortened and a secret's value never shown)."""
    env = dict(os.environ if environ is None else environ)
    data = _settings_data(env)
    not_utf8 = sorted(k for k, v in data.items() if not _is_utf8(v))
    if not_utf8:
        raise ConfigError(
            "\n".join(
                f"{var} is not valid: it contains bytes that are not UTF-8; fix or unset {var}"
                for var in not_utf8
            )
        )
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, env)) from None


def in_container(root: Path = Path("/")) -> bool:
    """True inside a Docker (/.dockerenv) or Podman (/run/.containerenv) container."""
    return (root / ".dockerenv").exists() or (root / "run" / ".containerenv").exists()


def require_writable_dirs(settings: Settings, *fields: str, container: bool | None = None) -> None:
    """Create each directory setting in ``fields`` and check that it can be written.

    Outside a container the defaults (/run/..., /var/log/portal, /workspace, /) need root: a
    first try by hand then stops here with one line naming every variable to set (exit 78)
    instead of failing half-way. Even as root, outside a container (`container`, default
    `in_container()`) a missing directory that is the image's default is not created: the
    line names it instead, so that a try on one's own machine leaves nothing behind.
    """
    if not (in_container() if container is None else container):
        missing = [
            f"{env_name(f)}={getattr(settings, f)}"
            for f in fields
            if f not in settings.model_fields_set and not Path(getattr(settings, f)).exists()
        ]
        if missing:
            many = len(missing) > 1
            names = " and ".join(m.split("=", 1)[0] for m in missing)
            raise ConfigError(
                f"this is not a container, and {', '.join(missing)} (the image's "
                f"default{'s' if many else ''}) do{'' if many else 'es'} not exist: the "
                "launcher creates the image's directories only in a container; set "
                f'{names} to {"directories" if many else "a directory"} of yours (see "Try '
                f'it without a GPU" in README.md), or create {"them" if many else "it"}'
            )
    failed: list[tuple[str, Path, str]] = []
    for field in fields:
        path: Path = getattr(settings, field)
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not os.access(path, os.W_OK | os.X_OK):
                failed.append((env_name(field), path, "Permission denied"))
        except OSError as exc:
            failed.append((env_name(field), path, exc.strerror or str(exc)))
    if not failed:
        return
    where = '(outside a container, see "Try it without a GPU" in README.md)'
    if len(failed) == 1:
        var, path, problem = failed[0]
        raise ConfigError(
            f"{var}={path} cannot be used ({problem}): set {var} to a directory you can "
            f"write {where}"
        )
    listed = ", ".join(f"{var}={path} ({problem})" for var, path, problem in failed)
    names = ", ".join(var for var, _, _ in failed)
    raise ConfigError(f"cannot use {listed}: set {names} to directories you can write {where}")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        return False
    return True


def secret_names() -> frozenset[str]:
    """Every variable name of a secret setting (its aliases included)."""
    names: set[str] = set()
    for name, f in Settings.model_fields.items():
        if "SecretStr" in str(f.annotation):
            alias = f.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(c for c in alias.choices if isinstance(c, str))
            names.add(env_name(name))
    return frozenset(names)


def _error_var(err: Any) -> str:
    """The variable an error is about: its location, or (a check across settings) the
    variable its message starts with."""
    if err["loc"]:
        return str(err["loc"][0])
    first = str(err["msg"]).removeprefix("Value error, ").split(" ", 1)[0]
    return first if re.fullmatch(r"[A-Z][A-Z0-9_]+", first) else "?"


def shown_value(value: str, limit: int = 60) -> str:
    """`value` for an error line: quoted, escaped (no raw newline) and shortened."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    secret = secret_names()
    lines = []
    for err in exc.errors():
        var = _error_var(err)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings: its message names them
            lines.append(f"{msg}; fix or unset {var}")
            continue
        value = "'***'" if var in secret else shown_value(env.get(var, ""))
        if err["type"].startswith("bool"):
            msg = f"expected one of {BOOL_VOCABULARY}"
        lines.append(f"{var}={value} is not valid: {msg}; fix or unset {var}")
    return "\n".join(lines)
