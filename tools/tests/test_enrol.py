"""``bandlink band enrol`` through the real command line, over nfcpy's ``udp`` front end, to an
emulated NTAG 424 DNA (tools/ntag424_emulator.py) listening on the other side, against a real
SQLite store holding the demo venue."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

from bandlink.gateway.core.bands.keys import DEVELOPMENT_MASTER_KEY, BandKeys
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_VENUE
from bandlink.tools import ntag424 as n
from bandlink.tools.cli import main
from bandlink.tools.enrol import DEFAULT_URL, ndef_file, read_band_url, sdm_settings, template_url
from bandlink.tools.ntag424_emulator import Ntag424, UdpCard

NEW_UID = bytes.fromhex("04e0101e0101e1")  # no band of the demo venue
ISSUED_UID = bytes.fromhex("04a1b2c3d4e5f6")  # Ada's band in the demo venue
GUEST = "g-bo"


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The development master key, whatever the machine's environment says."""
    for name in ("BANDLINK_BAND_MASTER_KEY", "BANDLINK_BAND_MASTER_KEY_FILE", "BANDLINK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BANDLINK_ENVIRONMENT", "development")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'bandlink.db'}"
    store = Store(url)
    store.migrate()
    store.load_venue(DEMO_VENUE, today=date.today())
    store.close()
    yield url


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    opened = Store(db)
    yield opened
    opened.close()


Card = Callable[[Ntag424], UdpCard]


@pytest.fixture
def card() -> Iterator[Card]:
    """Put a chip in the field of a fresh ``udp:localhost:PORT``; taken away after the test."""
    started: list[UdpCard] = []

    def place(chip: Ntag424) -> UdpCard:
        started.append(UdpCard(chip, _free_udp_port()).start())
        return started[-1]

    yield place
    for each in started:
        each.stop()


def _free_udp_port() -> int:
    """A free port without a service name: nfcpy's udp driver turns the port into a name
    (getnameinfo) and back into a number, which fails for a named one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        try:
            socket.getservbyport(port, "udp")
        except OSError:
            return port


def _enrol(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["band", "enrol", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def test_the_file_settings_point_at_the_url_values() -> None:
    url = template_url(DEFAULT_URL)
    settings = sdm_settings(url).encode()
    # bandlink.example/b?picc_data= is 29 characters after the file's 7 bytes of framing.
    assert settings == bytes.fromhex("4000E0C1FF12" + "240000" + "4A0000" + "4A0000")
    content = ndef_file(url)
    assert content[0x24 : 0x24 + 32] == b"0" * 32
    assert content[0x4A - 6 : 0x4A + 16] == b"&cmac=" + b"0" * 16
    assert len(content) == 0x4A + 16


def test_a_fresh_band_is_personalised_verified_and_issued(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, store: Store
) -> None:
    chip = Ntag424(NEW_UID)
    path = card(chip).path
    status, out, err = _enrol(capsys, "--guest", GUEST, "--device", path, "--db", db)
    assert (status, err) == (0, "")
    printed = json.loads(out)
    assert printed["uid"] == NEW_UID.hex().upper()
    assert (printed["guest"], printed["counter"]) == (GUEST, 1)
    assert printed["url"].startswith("https://bandlink.example/b?picc_data=")
    band = store.band(NEW_UID)
    assert band is not None and (band.guest_id, band.sun, band.blocked) == (GUEST, True, False)
    (entry,) = store.audit_since()  # who issued it, in the transaction that did
    assert (entry.actor, entry.action, entry.target) == ("cli", "band enrol", NEW_UID.hex())
    keys = BandKeys(DEVELOPMENT_MASTER_KEY)
    assert chip.keys[:3] == [keys.band_key(0, NEW_UID), keys.meta_read, keys.file_read(NEW_UID)]
    assert n.FACTORY_KEY not in chip.keys[:3]
    assert chip.key_versions[:3] == [1, 1, 1]
    # Every later read is a new SUN message, one count up, that the gateway's tool accepts.
    for expected in (2, 3):
        url = read_band_url(path)
        assert url != printed["url"]
        assert (
            main(["band", "sun-verify", "--master", "--key", DEVELOPMENT_MASTER_KEY.hex(), url])
            == 0
        )
        report = json.loads(capsys.readouterr().out)
        assert (report["uid"], report["counter"]) == (NEW_UID.hex().upper(), expected)
    assert chip.sdm_counter == 3


def test_a_long_url_goes_in_chained_frames(
    capsys: pytest.CaptureFixture[str], card: Card, db: str
) -> None:
    """A WriteData longer than the chip's 128-byte frames: nfcpy chains it, the chip too."""
    base = "https://tickets.bandlink.example/" + "festival-2026/" * 7 + "b"
    chip = Ntag424(NEW_UID)
    path = card(chip).path
    status, out, err = _enrol(capsys, "--guest", GUEST, "--device", path, "--db", db, "--url", base)
    assert (status, err) == (0, "")
    assert json.loads(out)["url"].startswith(base + "?picc_data=")
    assert max(len(command) for command in chip.commands) > 128  # the WriteData
    url = read_band_url(path)
    assert main(["band", "sun-verify", "--master", "--key", DEVELOPMENT_MASTER_KEY.hex(), url]) == 0
    assert json.loads(capsys.readouterr().out)["counter"] == 2


def test_the_master_key_comes_from_the_settings(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = bytes(range(16))
    monkeypatch.setenv("BANDLINK_BAND_MASTER_KEY", master.hex())
    monkeypatch.setenv("BANDLINK_DB", db)  # and the store, without --db
    chip = Ntag424(NEW_UID)
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", card(chip).path)
    assert (status, err) == (0, "")
    assert chip.keys[0] == BandKeys(master).band_key(0, NEW_UID)


def test_a_band_that_is_not_factory_fresh_is_refused(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, store: Store
) -> None:
    own_key = bytes.fromhex("0f" * 16)
    chip = Ntag424(NEW_UID, keys=[own_key] + [n.FACTORY_KEY] * 4)
    status, out, err = _enrol(capsys, "--guest", GUEST, "--device", card(chip).path, "--db", db)
    assert (status, out) == (1, "")
    assert "not factory-fresh" in _one_line(err)
    assert store.band(NEW_UID) is None
    assert chip.keys == [own_key] + [n.FACTORY_KEY] * 4
    assert not any(chip.files[n.NDEF_FILE])


def test_a_band_with_this_venues_keys_but_not_in_the_store_is_refused(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, tmp_path: Path
) -> None:
    """Enrolled against one store, then offered to another (an enrolment whose store failed
    looks the same): refused, and the message says whose keys the band carries."""
    chip = Ntag424(NEW_UID)
    path = card(chip).path
    assert _enrol(capsys, "--guest", GUEST, "--device", path, "--db", db)[0] == 0
    other = f"sqlite:///{tmp_path / 'other.db'}"
    fresh = Store(other)
    fresh.migrate()
    fresh.load_venue(DEMO_VENUE, today=date.today())
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", path, "--db", other)
    assert status == 1
    assert "carries this venue's keys already" in _one_line(err)
    assert fresh.band(NEW_UID) is None
    fresh.close()


def test_a_band_issued_already_is_refused_untouched(
    capsys: pytest.CaptureFixture[str], card: Card, db: str
) -> None:
    chip = Ntag424(ISSUED_UID)
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", card(chip).path, "--db", db)
    assert status == 1
    assert "issued already" in _one_line(err)
    assert chip.commands == []


def test_an_unknown_guest_is_refused_before_the_band_is_touched(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, store: Store
) -> None:
    chip = Ntag424(NEW_UID)
    status, _out, err = _enrol(
        capsys, "--guest", "g-nobody", "--device", card(chip).path, "--db", db
    )
    assert status == 1
    assert "no guest 'g-nobody'" in _one_line(err)
    assert chip.commands == []
    assert chip.keys == [n.FACTORY_KEY] * 5
    assert store.band(NEW_UID) is None


def test_a_band_pulled_away_midway_fails_cleanly(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, store: Store
) -> None:
    chip = Ntag424(NEW_UID)
    placed = card(chip)
    placed.silent_after = 4  # select, authenticate (2), WriteData: gone before the settings
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", placed.path, "--db", db)
    assert status == 1
    assert "stopped answering" in _one_line(err)
    assert store.band(NEW_UID) is None
    assert [command[1] for command in chip.commands] == [0xA4, 0x71, 0xAF, 0x8D]
    assert chip.settings[n.NDEF_FILE].sdm is None
    assert chip.keys == [n.FACTORY_KEY] * 5


class KeepsItsFileKey(Ntag424):
    """A faulty (or fake) chip: it answers ChangeKey 2 but keeps signing with the factory key."""

    def apdu(self, command: bytes) -> bytes:
        response = super().apdu(command)
        self.keys[2] = n.FACTORY_KEY
        return response


def test_a_band_whose_url_does_not_verify_is_not_issued(
    capsys: pytest.CaptureFixture[str], card: Card, db: str, store: Store
) -> None:
    chip = KeepsItsFileKey(NEW_UID)
    status, out, err = _enrol(capsys, "--guest", GUEST, "--device", card(chip).path, "--db", db)
    assert (status, out) == (1, "")
    assert "does not verify" in _one_line(err)
    assert store.band(NEW_UID) is None


def test_no_band_on_the_reader(capsys: pytest.CaptureFixture[str], db: str) -> None:
    path = f"udp:localhost:{_free_udp_port()}"  # nothing listens there
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", path, "--db", db)
    assert status == 1
    assert "no band on the reader" in _one_line(err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--url", "http://bandlink.example/b"], "https://host/path"),
        (["--url", "https://bandlink.example/b?x=1"], "https://host/path"),
        (["--url", "https://bandlink.example/" + "b" * 300], "255 bytes"),
        (["--url", "https://bandlink.example/" + "b" * 170], "256-byte NDEF file"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], db: str, extra: list[str], message: str
) -> None:
    args = ["--guest", GUEST, "--device", "udp:localhost:9", "--db", db, *extra]
    status, _out, err = _enrol(capsys, *args)
    assert status == 2
    assert message in _one_line(err)


def test_no_store_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANDLINK_DB", raising=False)
    status, _out, err = _enrol(capsys, "--guest", GUEST, "--device", "udp:localhost:9")
    assert status == 2
    assert "db" in err and "Traceback" not in err
