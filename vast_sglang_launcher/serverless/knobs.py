"""serverless's settings part: Vast's worker in front of the server.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..knob_types import Bool, Int, Line, Seconds


class ServerlessKnobs(BaseModel):
    """serverless's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

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
