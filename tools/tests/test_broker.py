"""The private Mosquitto the tests, demo and benchmarks run: it starts, restarts on the same
port, and leaves no process and no port behind; the ports handed to servers stay theirs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bandlink.tools.broker import MosquittoBroker, free_port
from bandlink.tools.wire import connect


def test_broker_stop_frees_port_and_process(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path)
    broker.start()
    pid, port = broker.pid, broker.port
    config = broker.config_path.read_text()
    assert pid is not None and "set_tcp_nodelay true" in config
    assert "allow_anonymous false" in config and "mosquitto_dynamic_security.so" in config
    login = broker.reader_login("gate-1")  # made while running: in at once, and after restart
    with socket.create_connection((broker.host, port), timeout=1):
        pass
    broker.restart()
    assert broker.port == port and broker.pid != pid
    link = connect(broker, login)
    assert not link.refused, link.reason
    link.close()
    broker.stop()
    assert broker.pid is None
    with pytest.raises(OSError):
        socket.create_connection((broker.host, port), timeout=1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_port_handed_to_a_server_is_not_one_an_outgoing_connection_can_take() -> None:
    """CI: a rig's gateway could not bind the port it was given: the kernel had handed it, as a
    source port, to one of the many connections four rigs open (a port-0 probe picks from the
    same ephemeral range). Nor may two rigs starting at once be given the same port."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(300)]
    assert not [port for port in ports if low <= port <= high]
    assert len(set(ports)) == len(ports)
    with socket.create_server(("127.0.0.1", ports[-1])):  # and it is free to bind
        pass
