"""The plan's settings part: what to serve and how the command is built (the model, SGLang's
options, the server's address, the GPUs, multi-node ranks, the hub and the option table).

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..knob_types import Bool, HeaderToken, Int, Line, ModelName, SafePath, Seconds, Url

DEFAULT_SERVER_PORT = 18000
"""The server's port unless LAUNCHER_SERVER_PORT says otherwise: the one home of 18000 (the
plan, the default PORTAL_CONFIG and the docs follow it)."""


class PlanKnobs(BaseModel):
    """The plan's knobs (`plan`, and the server's command line under `run`)."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

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

    # --- checks within the plan's knobs ---

    @field_validator("sglang_command")
    @classmethod
    def _sglang_command_splits(cls, value: str) -> str:
        # Checked here, once: every user reads `sglang_command_words` (plan, packages).
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(
                f"it cannot be split into words ({exc}): balance its quotes or escape them"
            ) from None
        return value

    @property
    def sglang_command_words(self) -> tuple[str, ...]:
        """SGLANG_COMMAND split into words like a POSIX shell (its validator checked that it
        splits): the program and its first words, before the server's options."""
        return tuple(shlex.split(self.sglang_command))

    @model_validator(mode="after")
    def _hub_dirs_absolute(self) -> PlanKnobs:
        # A relative HF_HOME / HF_HUB_CACHE is read once, against WORKSPACE (the server's
        # working directory), so that the prefetch, `plan` and the server use one cache.
        # Pure path arithmetic: nothing is looked up on the filesystem.
        for name in ("hf_home", "hf_hub_cache"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                object.__setattr__(self, name, self.workspace / value)
        return self

    @property
    def hub_cache(self) -> Path:
        """Where the Hugging Face cache keeps downloaded models: derived from the values
        alone, no I/O (huggingface_hub 2.4.0 constants.py: `HF_HUB_CACHE`, else
        `$HF_HOME/hub`, HF_HOME defaulting to `~/.cache/huggingface`, and the server's HOME
        is WORKSPACE)."""
        if self.hf_hub_cache is not None:
            return self.hf_hub_cache
        home = self.hf_home or self.workspace / ".cache" / "huggingface"
        return home / "hub"
