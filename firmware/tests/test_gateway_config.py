"""The reader runs by the gateway's Config: the real firmware (SimReader, MicroPython unix port)
with paho publishing retained Configs as a gateway would (SPEC, Configuration), each logged in
as itself under the venue ACL.

config.json says gate "north", direction in; the Configs say otherwise, and the taps and Births
show what the reader runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, grant, sim_reader

from bandlink.protocol import GATE, IN, OUT, POS, Config, Tap, encode, topics
from bandlink.tools.broker import MosquittoBroker

READER = "gate-1"
BAND = bytes.fromhex("04a1b2c3d4e5f6")


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, READER, tmp_path)
    played.answer = grant
    yield played
    played.close()


def reader_on(broker: MosquittoBroker, workdir: Path):  # type: ignore[no-untyped-def]
    return sim_reader(READER, broker, workdir, direction="in", gate="north", deadline_ms=800)


def last_tap(gateway: PlayedGateway) -> Tap:
    return gateway.taps()[-1]


def assert_runs(tap: Tap, direction: int, gate: str | None, deadline_ms: int) -> None:
    assert (tap.direction, tap.gate) == (direction, gate), tap
    assert tap.deadline is not None
    assert tap.deadline - tap.ts == deadline_ms, tap


def test_config_json_is_the_default_until_the_gateways_config(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    with reader_on(broker, tmp_path) as reader:
        reader.wait_online()
        assert gateway.wait_births(1).config_version is None  # none published yet
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), IN, "north", 800)


def test_the_reader_runs_by_the_gateways_retained_config_and_keeps_it_over_a_reboot(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    gateway.config(version=3, role=GATE, gate="south", direction=OUT, deadline_ms=500)
    with reader_on(broker, tmp_path) as reader:
        reader.wait_online()
        # Subscribed to cfg before its Birth: the retained Config was applied before it.
        assert gateway.wait_births(1).config_version == 3
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), OUT, "south", 500)

        # A newer Config while online: applied at once, and a new Birth says so.
        gateway.config(version=4, role=GATE, gate="east", direction=IN, hold_ms=300)
        assert gateway.wait_births(2).config_version == 4
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), IN, "east", 800)  # deadline_ms left out: config.json's

        # Not newer, another role, another reader, not a Config: each ignored.
        gateway.config(version=4, role=GATE, gate="west")
        gateway.config(version=2, role=GATE, gate="west")
        gateway.config(version=9, role=POS)
        wrong = Config(reader="gate-2", ts=1, version=10, role=GATE, gate="west")
        cfg = topics.reader_topic(READER, topics.CFG)
        gateway.client.publish(cfg, encode(wrong), qos=1).wait_for_publish(5)
        gateway.client.publish(cfg, b"\xa0", qos=1).wait_for_publish(5)  # an empty map
        assert gateway.rebirth().config_version == 4  # a barrier: all of the above came in
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), IN, "east", 800)
    log = reader.log()
    assert "config applied, version 3: gate south, direction out, deadline 500 ms, hold 1500" in log
    assert "config applied, version 4: gate east, direction in, deadline 800 ms, hold 300 ms" in log
    assert "config version 9 ignored: for role 1, and this reader runs role 0" in log, log
    assert "config version 10 ignored: addressed to gate-2" in log, log
    assert "frame dropped on bl/1/gate-1/cfg" in log, log

    # The gateway is away, and the broker forgot the retained Config: the reader keeps the
    # one it applied last, from its flash.
    gateway.client.publish(cfg, b"", qos=1, retain=True).wait_for_publish(5)
    births = len(gateway.births)
    with reader_on(broker, tmp_path) as reader:
        reader.wait_online()
        assert gateway.wait_births(births + 1).config_version == 4
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), IN, "east", 800)
    assert "config from flash, version 4: gate east, direction in" in reader.log()


def runs_its_own_config(broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path) -> str:
    """Start the reader: it reports no gateway Config and taps by config.json's (an entry at
    the north gate, an 800 ms deadline); its log."""
    with reader_on(broker, tmp_path) as reader:
        reader.wait_online()
        assert gateway.wait_births(1).config_version is None
        assert reader.tap(BAND).pattern == "green"
        assert_runs(last_tap(gateway), IN, "north", 800)
    return reader.log()


def test_a_config_with_a_zero_deadline_is_ignored(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    gateway.config(version=1, role=GATE, gate="south", deadline_ms=0)
    log = runs_its_own_config(broker, gateway, tmp_path)
    assert "config version 1 ignored: deadline_ms and hold_ms must be above 0" in log


@pytest.mark.parametrize(
    "stored",
    [
        b"\xa9\x00\x01\x01\x06",  # torn: the first bytes of a Config
        encode(Config(reader=READER, ts=1, version=5, role=POS)),  # another role
        encode(Config(reader="gate-2", ts=1, version=5, role=GATE, gate="west")),
    ],
    ids=["torn", "another-role", "another-reader"],
)
def test_a_stored_config_the_reader_cannot_run_is_ignored_at_boot(
    stored: bytes, broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    (tmp_path / f"{READER}.state.cfg").write_bytes(stored)
    assert "config on flash ignored" in runs_its_own_config(broker, gateway, tmp_path)


def test_a_resend_keeps_the_direction_its_operation_was_made_with(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    gateway.config(version=3, role=GATE, gate="south", direction=OUT)
    gateway.answer = lambda tap: None  # silent: the first tap goes unanswered
    with reader_on(broker, tmp_path) as reader:
        reader.wait_online()
        gateway.wait_births(1)
        assert reader.tap(BAND).pattern == "retry"
        gateway.config(version=4, role=GATE, gate="south", direction=IN)
        gateway.wait_births(2)
        gateway.answer = grant
        assert reader.tap(BAND).pattern == "green"  # the same operation: still an exit
        assert reader.tap(BAND).pattern == "green"  # a new one: an entry now
    first, resent, fresh = gateway.taps()
    assert (resent.mid, resent.direction) == (first.mid, OUT)
    assert fresh.mid != first.mid and fresh.direction == IN
