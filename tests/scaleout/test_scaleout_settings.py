"""Pure pieces of scale-out: the worker's address, the gateway's command line, the ports the
edge publishes, and the edge's exception for the gateway's /health probe."""

from __future__ import annotations

import shlex

import pytest

from vast_sglang_launcher.edge.caddyfile import render_caddyfile
from vast_sglang_launcher.edge.portal import portal_entries
from vast_sglang_launcher.errors import ConfigError
from vast_sglang_launcher.scaleout.gateway_program import gateway_argv
from vast_sglang_launcher.scaleout.join import worker_url
from vast_sglang_launcher.settings import load_settings


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"PUBLIC_IPADDR": "203.0.113.7", "VAST_TCP_PORT_8000": "40123"}, "http://203.0.113.7:40123"),
        (
            {"PUBLIC_IPADDR": "2001:db8::7", "VAST_TCP_PORT_8000": "40123", "ENABLE_HTTPS": "1"},
            "https://[2001:db8::7]:40123",
        ),
        (
            {"PUBLIC_IPADDR": "203.0.113.7", "VAST_TCP_PORT_8000": "1", "LAUNCHER_WORKER_URL": "http://w:9/"},
            "http://w:9",
        ),
    ],
)  # fmt: skip
def test_worker_url_defaults_to_vasts_public_address(env: dict[str, str], url: str) -> None:
    assert worker_url(load_settings(env)) == url


def test_worker_url_unknown_names_the_variables() -> None:
    names = r"LAUNCHER_WORKER_URL.*PUBLIC_IPADDR.*VAST_TCP_PORT_8000"
    with pytest.raises(ConfigError, match=names):
        worker_url(load_settings({"PUBLIC_IPADDR": "203.0.113.7"}))


def test_gateway_argv_from_the_settings() -> None:
    settings = load_settings(
        {
            "LAUNCHER_GATEWAY_COMMAND": "/opt/r/bin/python -m sglang_router.launch_router",
            "LAUNCHER_GATEWAY_PORT": "18111",
            "LAUNCHER_GATEWAY_WORKERS": "http://a:1, http://b:2",
            "LAUNCHER_GATEWAY_ARGS": "--policy round_robin --log-level 'warn'",
        }
    )
    assert shlex.join(gateway_argv(settings)) == (
        "/opt/r/bin/python -m sglang_router.launch_router --host 127.0.0.1 --port 18111 "
        "--health-check-timeout-secs 25 --worker-urls http://a:1 http://b:2 "
        "--policy round_robin --log-level warn"
    )


def test_gateway_is_published_on_8010_only_in_gateway_mode() -> None:
    plain = {(e.external, e.internal) for e in portal_entries(load_settings({}))}
    assert (8010, 18010) not in plain
    on = load_settings({"LAUNCHER_RUN_GATEWAY": "true"})
    assert (8010, 18010) in {(e.external, e.internal) for e in portal_entries(on)}


def test_health_passes_the_edge_only_in_worker_mode_and_only_on_the_api() -> None:
    base = {"OPEN_BUTTON_TOKEN": "t"}
    plain = load_settings(base)
    assert "edge_gateway_probe" not in render_caddyfile(plain, portal_entries(plain))
    worker = load_settings({**base, "LAUNCHER_GATEWAY_URL": "http://gw:1"})
    text = render_caddyfile(worker, portal_entries(worker))
    assert text.count("handle @edge_gateway_probe {") == 1
    api_site = text.split("http://:8000 {", 1)[1].split("\n}", 1)[0]
    assert "handle @edge_gateway_probe" in api_site
