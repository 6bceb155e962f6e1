"""Reader sessions (Sparkplug B births and deaths) through a real broker: the gateway learns
who is online from births, and from the broker publishing a dead reader's will."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader


def log_lines(gateway: GatewayGroup, pattern: str, count: int, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, gateway.log())
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_connection_is_a_new_session_even_across_restarts(
    broker: MosquittoBroker, gateway: GatewayGroup, tmp_path: Path
) -> None:
    login = broker.reader_login("gate-1")
    for _ in range(2):
        with SimReader("gate-1", broker.url, tmp_path, login=login) as reader:
            reader.wait_online()
    sessions = log_lines(gateway, r"reader gate-1 online: bandlink-[\d.]+, session (\d+)", 2)
    assert len(sessions) == 2
    assert int(sessions[1]) == int(sessions[0]) + 1  # kept on the reader's flash


def test_a_reader_that_dies_is_reported_offline_by_its_will(
    broker: MosquittoBroker, gateway: GatewayGroup, tmp_path: Path
) -> None:
    reader = SimReader("gate-1", broker.url, tmp_path, login=broker.reader_login("gate-1")).start()
    reader.wait_online()
    (session,) = log_lines(gateway, r"reader gate-1 online: \S+, session (\d+)", 1)
    assert reader.pid is not None
    os.kill(reader.pid, signal.SIGKILL)  # power cut: no goodbye, the broker sends the will
    reader.stop()
    offline = log_lines(gateway, r"reader gate-1 offline \(session (\d+)\)", 1)
    assert offline == [session]
