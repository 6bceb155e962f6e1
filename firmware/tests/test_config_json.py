"""A config.json the reader cannot use stops it at boot, before anything connects: the real
firmware (``main.py`` on the MicroPython unix port, as SimReader starts it), with listening
sockets standing in for the broker and the simulated board's antenna, which must see nobody.
Each rule is in mp_config.py."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from bandlink.tools.micropython import micropython_command, micropython_env


def boot(settings: dict[str, object], workdir: Path) -> tuple[int, str, int]:
    """Run main.py on settings; (exit code, output, connections the broker and antenna got)."""
    with (
        socket.create_server(("127.0.0.1", 0)) as broker,
        socket.create_server(("127.0.0.1", 0)) as antenna,
    ):
        config = {
            "reader": "gate-1",
            "board": "sim",
            "antenna": "127.0.0.1:%d" % antenna.getsockname()[1],
            "broker": {"host": "127.0.0.1", "port": broker.getsockname()[1]},
            "state_file": "gate-1.state",
            **settings,
        }
        path = workdir / "config.json"
        path.write_text(json.dumps(config))
        process = subprocess.Popen(
            micropython_command("-m", "main", str(path)),
            env=micropython_env(),
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        connections = 0
        for server in (broker, antenna):
            server.settimeout(0)
            try:
                server.accept()[0].close()
                connections += 1
            except BlockingIOError:
                pass
    return process.returncode, output.decode(errors="replace"), connections


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"gate": {"gate": "g" * 25}}, "gate.gate must be text of at most 24 characters"),
        ({"gate": {"direction": "up"}}, 'gate.direction must be one of "in", "out"'),
        ({"reader": "gate/1"}, "reader must be 1 to 32 ASCII letters"),
        ({"deadline_ms": 0}, "deadline_ms must be a whole number"),
        (
            {"broker": {"host": "127.0.0.1", "port": 1883, "password": "secret"}},
            "broker.user, broker.password must be given both or neither",
        ),
    ],
    ids=["gate-name-25", "direction", "reader-id", "deadline-0", "password-without-user"],
)
def test_a_bad_config_json_stops_the_reader_before_anything_connects(
    settings: dict[str, object], words: str, tmp_path: Path
) -> None:
    code, output, connections = boot(settings, tmp_path)
    assert code == 2, output
    assert "bandlink: not starting: " in output and words in output, output
    assert connections == 0, "something connected before the config was checked"
    assert not (tmp_path / "gate-1.state").exists(), "the session counter moved"
