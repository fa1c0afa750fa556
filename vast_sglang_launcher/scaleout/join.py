"""`gateway_membership`: the worker-mode entry point that supervise uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ConfigError
from ..settings import Settings
from .gateway_api import GatewayApi
from .membership import GatewayMembership, Timing

SGLANG_HEALTH_TIMEOUT = 20
"""Seconds SGLang's `/health` may take before it answers 503: it runs a one-token generation
and waits up to SGLANG_HEALTH_CHECK_TIMEOUT (default 20) for it (0.5.6.post2 and 0.5.23
`srt/entrypoints/http_server.py` `health_generate`, HEALTH_CHECK_TIMEOUT)."""


def worker_record(settings: Settings) -> dict[str, Any]:
    """The worker record sent with each registration, beside url and api_key (smg's
    `WorkerSpec`, `crates/protocols/src/worker.rs`; sglang-router ignores what it lacks).

    - `health.timeout_secs`: smg probes `/health` with a 5 s timeout by default
      (`--health-check-timeout-secs`), shorter than the generation SGLang's `/health` may run
      under load, so a busy server would be marked unhealthy and taken out; 5 s more than
      SGLang's own limit lets SGLang give the answer (200 or its 503).
    - no model label: smg reads the served model from the server itself (`/model_info`,
      `/server_info`: `discover_metadata.rs`) and a label of ours would take precedence over
      it (`create_worker.rs`), wrong whenever `--served-model-name` is set. The labels say
      which instance this is.
    """
    labels = {"launcher": "vast-sglang-launcher"}
    if settings.container_id:
        labels["vast_container_id"] = settings.container_id
    return {
        "worker_type": "regular",
        "runtime_type": "sglang",
        "labels": labels,
        "health": {"timeout_secs": SGLANG_HEALTH_TIMEOUT + 5},
    }


def check_url(value: str, variable: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{variable}={value!r} is not valid: expected http://host:port or "
            f"https://host:port; fix or unset {variable}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(
            f"{variable}={value!r} is not valid: the port is not a number in 1-65535; "
            f"fix or unset {variable}"
        ) from None
    return value.rstrip("/")


def worker_url(settings: Settings) -> str:
    """Where the gateway reaches this server: LAUNCHER_WORKER_URL, else Vast's public
    address and the public port of 8000 (ConfigError when neither is known)."""
    if settings.worker_url:
        return check_url(settings.worker_url, "LAUNCHER_WORKER_URL")
    if settings.public_ipaddr and settings.vast_tcp_port_8000:
        scheme = "https" if settings.enable_https else "http"
        host = settings.public_ipaddr
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{settings.vast_tcp_port_8000}"
    raise ConfigError(
        "LAUNCHER_GATEWAY_URL is set but this server's public address is unknown: set "
        "LAUNCHER_WORKER_URL (or PUBLIC_IPADDR and VAST_TCP_PORT_8000)"
    )


def gateway_membership(
    settings: Settings,
    client: httpx.AsyncClient,
    log: Any,
    note: Callable[[dict[str, Any]], None],
) -> GatewayMembership | None:
    """The worker's membership of LAUNCHER_GATEWAY_URL, or None without one.

    Raises ConfigError (one line naming the variable) for a bad URL. Create it inside the
    running loop; give it the launcher's HTTP client (no proxy from the environment).
    """
    if not settings.gateway_url:
        return None
    base = check_url(settings.gateway_url, "LAUNCHER_GATEWAY_URL")
    edge_token = (
        settings.open_button_token.get_secret_value() if settings.open_button_token else None
    )
    gateway_token = (
        settings.gateway_token.get_secret_value() if settings.gateway_token else edge_token
    )
    api = GatewayApi(client, base, gateway_token, settings.gateway_timeout, worker_record(settings))
    timing = Timing(
        register_timeout=settings.gateway_register_timeout,
        drain_timeout=settings.gateway_drain_timeout,
        retry_max=settings.gateway_retry_max,
        recheck=settings.gateway_recheck,
    )
    # The worker's API key is the token of this instance's edge: the gateway sends it as
    # `Authorization: Bearer` on every request it routes here.
    api_key = edge_token if settings.enable_auth else None
    return GatewayMembership(api, worker_url(settings), api_key, timing, log, note)
