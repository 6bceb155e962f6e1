"""The private Mosquitto the tests, demo and benchmarks run: it starts, restarts on the same
port, and leaves no process and no port behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bandlink.tools.broker import MosquittoBroker
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
