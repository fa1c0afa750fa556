"""Every knob of the launcher: one settings class, read from the environment once.

Each field's docstring is the user-facing documentation; the README's settings table is
generated from this class (``python -m vast_sglang_launcher settings --markdown``) and a test
keeps the two equal. Nothing else in the package reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

# Variables whose empty value means something (an empty CUDA_VISIBLE_DEVICES hides every GPU);
# any other variable set to an empty string counts as unset.
_EMPTY_IS_A_VALUE = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})

Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """The launcher's configuration. Environment names are given by each field's alias."""

    model_config = SettingsConfigDict(
        extra="ignore",
        case_sensitive=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    # --- what to serve (plan) -------------------------------------------------------------
    model: str | None = Field(None, validation_alias=AliasChoices("SGLANG_MODEL", "MODEL_NAME"))
    """Model to serve: a Hugging Face repo id or a local directory. `MODEL_NAME` is accepted
    as a fallback; `SGLANG_MODEL` wins when both are set. Unset: the server is not started."""

    sglang_args: str = Field("", validation_alias="SGLANG_ARGS")
    """Extra SGLang options, split like a shell would split them (never run by a shell)."""

    sglang_args_file: Path = Field(
        Path("/etc/sglang-args.conf"), validation_alias="SGLANG_ARGS_FILE"
    )
    """File of extra SGLang options appended after `SGLANG_ARGS`; `#` comments, several lines
    and quoted values allowed. A missing file is fine."""

    auto_parallel: bool = Field(
        True, validation_alias=AliasChoices("AUTO_PARALLEL", "USE_ALL_GPUS")
    )
    """Spread the model over every visible GPU (tensor parallel, plus data parallel when the
    heads do not divide) unless you chose a parallel layout yourself. `USE_ALL_GPUS` is the
    older name."""

    sglang_command: str = Field("sglang serve", validation_alias="SGLANG_COMMAND")
    """Command that starts the server, before its options (e.g. `python3 -m
    sglang.launch_server`)."""

    sglang_host: str = Field("127.0.0.1", validation_alias="SGLANG_HOST")
    """Address the server listens on (the auth proxy publishes it)."""

    sglang_port: int = Field(18000, ge=1, le=65535, validation_alias="SGLANG_PORT")
    """Port the server listens on (published as 8000 by the auth proxy)."""

    workspace: Path = Field(Path("/workspace"), validation_alias="WORKSPACE")
    """Working directory and HOME of the server; caches go here."""

    gpu_count: int | None = Field(None, ge=0, validation_alias="GPU_COUNT")
    """Number of GPUs to assume when NVML is unavailable (ignored when NVML answers)."""

    cuda_visible_devices: str | None = Field(None, validation_alias="CUDA_VISIBLE_DEVICES")
    """GPUs the server may use: indices or GPU/MIG UUIDs, comma-separated; empty hides all."""

    nvidia_visible_devices: str | None = Field(None, validation_alias="NVIDIA_VISIBLE_DEVICES")
    """GPUs given to the container (`all`, `none`, `void`, indices or UUIDs); used when
    `CUDA_VISIBLE_DEVICES` is unset."""

    nnodes: int = Field(1, ge=1, validation_alias="SGLANG_NNODES")
    """Number of machines serving one model together (multi-node)."""

    node_rank: int = Field(0, ge=0, validation_alias="SGLANG_NODE_RANK")
    """This machine's rank among `SGLANG_NNODES` (0 is the head)."""

    dist_init_addr: str | None = Field(None, validation_alias="SGLANG_DIST_INIT_ADDR")
    """`host:port` of the head node for multi-node serving."""

    hf_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    )
    """Hugging Face token for gated models (also used by the weight prefetch and to read the
    model's config.json)."""

    hf_endpoint: str = Field("https://huggingface.co", validation_alias="HF_ENDPOINT")
    """Hugging Face hub address."""

    hf_home: Path | None = Field(None, validation_alias="HF_HOME")
    """Hugging Face home; default `$WORKSPACE/.cache/huggingface`."""

    hf_hub_cache: Path | None = Field(None, validation_alias="HF_HUB_CACHE")
    """Hugging Face model cache; default `$HF_HOME/hub`."""

    hf_hub_offline: bool = Field(False, validation_alias="HF_HUB_OFFLINE")
    """Never contact the hub: no weight prefetch, and config.json only from a local dir or the
    HF cache."""

    option_table: Path = Field(
        Path("/etc/vast-sglang-launcher/sglang-options.json"),
        validation_alias="LAUNCHER_OPTION_TABLE",
    )
    """SGLang option table written at image build (`option-table --output`); the package's
    snapshot is used when it is missing."""

    model_info_timeout: Seconds = Field(5.0, validation_alias="LAUNCHER_MODEL_INFO_TIMEOUT")
    """Seconds allowed to fetch the model's config.json from the hub."""

    # --- cold start (weights, caches, load phases) ---------------------------------------------
    prefetch: bool = Field(True, validation_alias="LAUNCHER_PREFETCH")
    """Download the model's weights from the hub at boot, beside the first-boot installs and
    the provisioning script, so that the server starts on a complete download. Off: SGLang
    downloads them itself when it starts."""

    prefetch_connections: int = Field(
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

    liveness_failures: int = Field(3, ge=1, validation_alias="LAUNCHER_LIVENESS_FAILURES")
    """Consecutive failed liveness probes that make the launcher restart the server."""

    backoff_initial: Seconds = Field(2.0, validation_alias="LAUNCHER_BACKOFF_INITIAL")
    """Seconds before the first restart; doubles on each restart up to `LAUNCHER_BACKOFF_MAX`."""

    backoff_max: Seconds = Field(120.0, validation_alias="LAUNCHER_BACKOFF_MAX")
    """Longest wait between restarts, in seconds."""

    backoff_reset: Seconds = Field(600.0, validation_alias="LAUNCHER_BACKOFF_RESET")
    """Seconds of healthy serving after which the restart delay starts again from the initial."""

    start_retries: int = Field(3, ge=0, validation_alias="LAUNCHER_START_RETRIES")
    """Restarts tried when the server fails before it was ever ready; then the launcher gives
    up (exit 78)."""

    stop_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_STOP_TIMEOUT")
    """Seconds the server may drain after SIGTERM before its process group is killed."""

    tail_lines: int = Field(40, ge=1, validation_alias="LAUNCHER_TAIL_LINES")
    """Server output lines kept to explain a failure."""

    log_dir: Path = Field(Path("/var/log/portal"), validation_alias="LAUNCHER_LOG_DIR")
    """Directory of the log files (sglang.log, provisioning and hotfix logs)."""

    log_format: Literal["console", "json"] = Field(
        "console", validation_alias="LAUNCHER_LOG_FORMAT"
    )
    """Format of the launcher's own log lines: `console` or `json`."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LAUNCHER_LOG_LEVEL"
    )
    """Least severe launcher log level printed."""

    run_dir: Path = Field(Path("/run/vast-sglang-launcher"), validation_alias="LAUNCHER_RUN_DIR")
    """Directory of status.json and the launcher's pid files."""

    marker_dir: Path = Field(Path("/"), validation_alias="LAUNCHER_MARKER_DIR")
    """Directory of the boot markers (`.first_boot_complete`, `.provisioning`, ...)."""

    # --- boot (entrypoint, provision) -----------------------------------------------------
    hotfix_script: str | None = Field(None, validation_alias="HOTFIX_SCRIPT")
    """URL or path of a script run early on every boot."""

    provisioning_script: str | None = Field(None, validation_alias="PROVISIONING_SCRIPT")
    """URL or path of a script run once, before the server starts."""

    apt_packages: str = Field("", validation_alias="APT_PACKAGES")
    """Debian packages installed on first boot (space-separated)."""

    pip_packages: str = Field("", validation_alias="PIP_PACKAGES")
    """Python packages installed on first boot into SGLang's Python (space-separated)."""

    pip_python: Path | None = Field(None, validation_alias="LAUNCHER_PIP_PYTHON")
    """Python that `PIP_PACKAGES` go into; default the interpreter of `SGLANG_COMMAND`."""

    download_timeout: Seconds = Field(30.0, validation_alias="LAUNCHER_DOWNLOAD_TIMEOUT")
    """Seconds allowed to connect to, and between reads from, a script URL."""

    download_retries: int = Field(3, ge=0, validation_alias="LAUNCHER_DOWNLOAD_RETRIES")
    """Retries of a script download after a network error or a 5xx answer."""

    download_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1, validation_alias="LAUNCHER_DOWNLOAD_MAX_BYTES"
    )
    """Largest script accepted, in bytes."""

    portal_config: str | None = Field(None, validation_alias="PORTAL_CONFIG")
    """Published ports, `host:external:internal:path:name|...`; default publishes the SGLang
    API 8000->18000, the Instance Portal 1111->11111 and Jupyter 8080."""

    supervisord_config: Path = Field(
        Path("/etc/supervisor/supervisord.conf"), validation_alias="LAUNCHER_SUPERVISORD_CONFIG"
    )
    """supervisord configuration that `entrypoint` starts."""

    # --- the auth edge (edge) -------------------------------------------------------------
    open_button_token: SecretStr | None = Field(None, validation_alias="OPEN_BUTTON_TOKEN")
    """Token accepted as `Authorization: Bearer`, as a `?token=` link, and as the default
    Basic password."""

    web_username: str = Field("vastai", validation_alias="WEB_USERNAME")
    """User name for HTTP Basic authentication."""

    web_password: SecretStr | None = Field(None, validation_alias="WEB_PASSWORD")
    """Password for HTTP Basic authentication; default `OPEN_BUTTON_TOKEN`."""

    enable_auth: bool = Field(True, validation_alias="ENABLE_AUTH")
    """Require authentication on every published port."""

    auth_exclude: str = Field("", validation_alias="AUTH_EXCLUDE")
    """External ports served without authentication (comma or space separated)."""

    enable_https: bool = Field(False, validation_alias="ENABLE_HTTPS")
    """Serve the published ports over TLS with `LAUNCHER_TLS_CERT` and `LAUNCHER_TLS_KEY`."""

    tls_cert: Path = Field(Path("/etc/instance.crt"), validation_alias="LAUNCHER_TLS_CERT")
    """TLS certificate used when `ENABLE_HTTPS` is true."""

    tls_key: Path = Field(Path("/etc/instance.key"), validation_alias="LAUNCHER_TLS_KEY")
    """TLS private key used when `ENABLE_HTTPS` is true."""

    caddy_bin: str = Field("caddy", validation_alias="LAUNCHER_CADDY_BIN")
    """Caddy executable that `edge` runs."""

    portal_yaml: Path = Field(Path("/etc/portal.yaml"), validation_alias="LAUNCHER_PORTAL_YAML")
    """Application list of the Instance Portal, written by `edge` from `PORTAL_CONFIG` on every
    start (the portal waits for this file)."""

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
    def hub_cache(self) -> Path:
        """Where the Hugging Face cache keeps downloaded models."""
        if self.hf_hub_cache is not None:
            return self.hf_hub_cache
        home = self.hf_home or self.workspace / ".cache" / "huggingface"
        return home / "hub"

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status.json"

    def marker(self, name: str) -> Path:
        """Path of a boot marker such as `.provisioning`."""
        return self.marker_dir / name


def env_name(field: str) -> str:
    """The environment variable a field is read from (its first alias)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return alias if isinstance(alias, str) else field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the variable and the fix."""
    env = dict(os.environ if environ is None else environ)
    names = {env_name(f) for f in Settings.model_fields}
    for f in Settings.model_fields.values():
        if isinstance(f.validation_alias, AliasChoices):
            names.update(c for c in f.validation_alias.choices if isinstance(c, str))
    data = {k: v for k, v in env.items() if k in names and (v.strip() or k in _EMPTY_IS_A_VALUE)}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, env)) from None


def _explain(exc: ValidationError, env: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        var = str(err["loc"][0]) if err["loc"] else "?"
        value = env.get(var, "")
        msg = err["msg"]
        if err["type"].startswith("bool"):
            msg = "expected one of true/false/1/0/yes/no"
        lines.append(f"{var}={value!r} is not valid: {msg}; fix or unset {var}")
    return "\n".join(lines)
