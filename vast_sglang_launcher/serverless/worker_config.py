"""What Vast's worker is told (pure): `worker_spec` for `pyworker`, `worker_env` for its process.

Read in vastai 1.9.1 (`vastai/serverless/server/`):

- `worker.py` `WorkerConfig`: the worker posts each request's `payload` to
  `model_server_url:model_server_port` + the handler's route, unchanged, and streams the
  answer back when it is `text/event-stream`; it tails `model_log_file` for the
  `LogActionConfig` lines: `on_load` runs the benchmark and then reports loaded, `on_error`
  reports the error (`lib/backend.py` `__read_logs`). An error is never taken back
  (`lib/data_types.py` `ModelMetrics.set_errored`): only a give-up may be reported as one.
- No `model_healthcheck_url`: the worker would poll it every 10 s once loaded and report
  every failed poll as an error (`lib/backend.py` `__healthcheck`), so a restart that the
  launcher recovers from would get the worker replaced. Without one it waits 10 s after the
  benchmark before it reports loaded.
- The environment (`lib/metrics.py` `Metrics`, `get_url`; `lib/server.py`
  `start_server_async`; `lib/backend.py` `Backend`): `CONTAINER_ID` (an integer),
  `REPORT_ADDR` (comma separated), `WORKER_PORT` (and `WORKER_HTTP_PORT`, default the next
  port), `PUBLIC_IPADDR` and `VAST_TCP_PORT_<WORKER_PORT>` (the URL it reports),
  `MASTER_TOKEN`, `USE_SSL`, `UNSECURED`. A missing one is a KeyError deep in the worker, so
  they are checked here first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..settings import Settings

READY_LINE = "The server is fired up and ready to roll!"
"""SGLang's ready line, in every supported release (0.5.6.post2 to 0.5.23
`srt/entrypoints/http_server.py` `_wait_and_warmup`)."""

GIVE_UP_LINE = "[vast-sglang-launcher] giving up: "
"""The line the launcher writes into sglang.log when it gives up on the server (exit 78):
`supervise.supervisor.Supervisor._give_up` through `OutputSink.note`. A restart it will
recover from writes no such line."""

ROUTES = ("/v1/completions", "/v1/chat/completions")
"""The OpenAI routes the worker forwards."""

DEFAULT_TOKENS = {"/v1/completions": 16, "/v1/chat/completions": 256}
"""Tokens a request asks for when it names no max_tokens: SGLang's completions default (16,
0.5.23 `entrypoints/openai/protocol.py` `CompletionRequest.max_tokens`); chat has none (up to
the context), so a typical answer's length is assumed."""

BENCHMARK_PROMPTS = (
    "Explain in a few sentences how a GPU runs a neural network.",
    "Write a short story about a lighthouse keeper.",
    "List ten facts about the ocean.",
    "Describe the water cycle to a child.",
)
BENCHMARK_TOKENS = 128


def _need(environ: Mapping[str, str], name: str, why: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"SERVERLESS is true but {name} is not set: {why}; set {name}")
    return value


def worker_env(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment: the container's, with the settings' values of Vast's
    variables (checked; ConfigError names the variable). No MODEL_HEALTH_ENDPOINT."""
    if not settings.report_addr:
        raise ConfigError(
            "SERVERLESS is true but REPORT_ADDR is not set: the worker reports to Vast's "
            "autoscaler there (Vast sets it on a serverless endpoint's workers); set REPORT_ADDR"
        )
    if not settings.container_id or not settings.container_id.isdigit():
        raise ConfigError(
            f"SERVERLESS is true but CONTAINER_ID={settings.container_id or ''!r} is not this "
            "instance's number (Vast sets it); set CONTAINER_ID"
        )
    if not settings.public_ipaddr:
        raise ConfigError(
            "SERVERLESS is true but PUBLIC_IPADDR is not set: the worker reports its address "
            "as $PUBLIC_IPADDR:$VAST_TCP_PORT_<WORKER_PORT>; set PUBLIC_IPADDR"
        )
    port_var = f"VAST_TCP_PORT_{settings.worker_port}"
    public_port = _need(environ, port_var, f"the public port of WORKER_PORT={settings.worker_port}")
    if not public_port.isdigit() or not 1 <= int(public_port) <= 65535:
        raise ConfigError(f"{port_var}={public_port!r} is not a port number; fix {port_var}")
    if not settings.model:
        raise ConfigError(
            "SERVERLESS is true but SGLANG_MODEL is not set: the worker has no server to put "
            "in front of; set SGLANG_MODEL (or SERVERLESS=false)"
        )
    env = {k: v for k, v in environ.items() if k != "MODEL_HEALTH_ENDPOINT"}
    env.update(
        REPORT_ADDR=settings.report_addr,
        CONTAINER_ID=settings.container_id,
        WORKER_PORT=str(settings.worker_port),
        PUBLIC_IPADDR=settings.public_ipaddr,
        MASTER_TOKEN=settings.master_token.get_secret_value() if settings.master_token else "",
        PYTHONUNBUFFERED="1",
    )
    env[port_var] = public_port
    return env


def worker_spec(settings: Settings, server_log: str, model_log: str) -> dict[str, Any]:
    """The JSON that `pyworker` turns into vastai's WorkerConfig."""
    host = settings.sglang_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return {
        "model_server_url": f"http://{host}",
        "model_server_port": settings.sglang_port,
        "server_log": server_log,
        "model_log": model_log,
        "on_load": [READY_LINE],
        "on_error": [GIVE_UP_LINE],
        "routes": list(ROUTES),
        "default_tokens": DEFAULT_TOKENS,
        "max_queue_time": settings.serverless_max_queue,
        "benchmark_route": ROUTES[0],
        "benchmark": [
            {"prompt": p, "max_tokens": BENCHMARK_TOKENS, "temperature": 0.0}
            for p in BENCHMARK_PROMPTS
        ],
    }
