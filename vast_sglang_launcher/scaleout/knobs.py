"""scaleout's settings part: joining or running a gateway in front of several instances.

Composed into the one `settings.Settings`; imports only pydantic and the shared floor
(`knob_types`), never the rest of its capability, so that `settings` can compose it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..knob_types import Bool, HeaderToken, Int, Line, Seconds, Url, Urls


class ScaleoutKnobs(BaseModel):
    """scaleout's knobs."""

    model_config = ConfigDict(use_attribute_docstrings=True, defer_build=True)

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
