"""The suite cannot reach past loopback (tests/conftest.py, isolate_network)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from conftest import free_port, network_interfaces


def test_the_tests_see_only_loopback() -> None:
    assert network_interfaces() == {"lo"}
    with pytest.raises(OSError):
        socket.create_connection(("1.1.1.1", 53), timeout=5)


def test_a_started_process_cannot_resolve_a_public_name() -> None:
    code = "import socket; socket.getaddrinfo('huggingface.co', 443)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "gaierror" in done.stderr


def test_loopback_is_up_and_ports_are_not_handed_out_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports[0]))
        server.listen()
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=5):
            pass
