"""Every tap carries the band's SUN message: the real firmware (SimReader, MicroPython unix port,
at the reader's heap limit) reads the NDEF message the simulated antenna hands it with the band
(``place <uid> <ndef hex>``, as the controller emulating an NTAG 424 DNA sends it) and puts the
URL's picc_data / e, enc and cmac into the Tap, decoded; what the paho-played gateway receives is
compared with the URL's hex. A band without SUN taps with its UID alone, a read torn mid-way asks
for another tap and sends nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, grant, paid, refuse, sim_reader

from bandlink.gateway.core.payments.pin import reader_pin_key
from bandlink.protocol import Tap, messages, reasons
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.micropython import DEFAULT_HEAP
from bandlink.tools.simreader import PLAIN_BAND, TORN, Feedback, SimReader
from bandlink.tools.sunband import uri_record

BAND = bytes.fromhex("04a1b2c3d4e5f6")
OTHER = bytes.fromhex("04b0b0b0b0b0b0")
AES_PICC = "EF963FF7828658A599F3041510671E88"
LRP_PICC = "07D9CA2545881D4BFDD920BE1603268C0714420DD893A497"
# Third-party vectors: AES mode with and without file data, LRP mode.
WITH_FILE = (
    f"https://sdm.example.com/tag?picc_data={AES_PICC}"
    "&enc=94592FDE69FA06E8E3B6CA686A22842B&cmac=C48B89C17A233B2C"
)
WITHOUT_FILE = f"https://sdm.example.com/?picc_data={AES_PICC}&cmac=94EED9EE65337086"
LRP = f"https://sdm.example.com/?e={LRP_PICC}&enc=D6E921C47DB4C17C56F979F81559BB83&cmac=F9481AC7D855BDB6"
DEADLINE_MS = 400


def ndef(url: str) -> str:
    """The NDEF message an NTAG 424 DNA holds for url, in hex: one short URI record."""
    return uri_record(url).hex()


def tap(reader: SimReader, uid: bytes, ndef_word: str = "", timeout: float = 5) -> Feedback:
    """SimReader.tap with the NDEF message the antenna hands over with the band (hex), none
    (a plain tag), or "torn"."""
    if ndef_word == "torn":
        return reader.tap(uid, timeout, band=TORN)
    if not ndef_word:
        return reader.tap(uid, timeout, band=PLAIN_BAND)
    return reader.tap(uid, timeout, ndef=bytes.fromhex(ndef_word))


def sun_of(url: str) -> tuple[bytes, bytes | None, bytes]:
    """What the Tap must carry for url: (picc, file, cmac), hex-decoded from its parameters."""
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    file = query.get("enc")
    picc = query.get("picc_data") or query["e"]
    return bytes.fromhex(picc), bytes.fromhex(file) if file else None, bytes.fromhex(query["cmac"])


def carried(tap: Tap) -> tuple[bytes | None, bytes | None, bytes | None]:
    return tap.picc, tap.file, tap.cmac


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, "gate-1", tmp_path)
    yield played
    played.close()


@pytest.fixture
def gate(broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path) -> Iterator[SimReader]:
    reader = sim_reader("gate-1", broker, tmp_path, deadline_ms=DEADLINE_MS, heap=DEFAULT_HEAP)
    with reader:
        reader.wait_online()
        gateway.wait_births(1)
        yield reader


def test_a_gate_tap_carries_the_sun_message_of_the_bands_url(
    gateway: PlayedGateway, gate: SimReader
) -> None:
    gateway.answer = grant
    urls = (WITH_FILE, WITHOUT_FILE, LRP, WITH_FILE.lower())
    for url in urls:
        assert tap(gate, BAND, ndef(url)).pattern == "green", url
    taps = gateway.sent(len(urls))
    assert [carried(t) for t in taps] == [sun_of(url) for url in urls]
    assert len(taps[2].picc or b"") == 24  # LRP mode
    assert all(t.uid == BAND for t in taps)


def test_a_band_without_sun_taps_with_its_uid_alone(
    gateway: PlayedGateway, gate: SimReader
) -> None:
    gateway.answer = grant
    assert tap(gate, BAND).pattern == "green"  # no NDEF at all (a plain NTAG21x)
    assert tap(gate, OTHER, ndef("https://shop.example.com/band/42")).pattern == "green"
    assert [(t.uid, *carried(t)) for t in gateway.sent(2)] == [
        (BAND, None, None, None),
        (OTHER, None, None, None),
    ]


def test_a_malformed_sun_url_sends_the_uid_alone_and_the_reader_keeps_going(
    gateway: PlayedGateway, gate: SimReader
) -> None:
    gateway.answer = grant
    broken = (
        WITHOUT_FILE[:-1],  # odd cmac
        WITHOUT_FILE.replace("EF96", "EG96"),  # not hex
        WITHOUT_FILE.replace(AES_PICC, AES_PICC[:30]),  # 15-byte picc
        WITH_FILE.replace("94592FDE69FA06E8", ""),  # 8 bytes of file data
    )
    for url in broken:
        assert tap(gate, BAND, ndef(url)).pattern == "green", url
    assert tap(gate, BAND, ndef(WITHOUT_FILE)).pattern == "green"
    taps = gateway.sent(5)
    assert [carried(t) for t in taps[:4]] == [(None, None, None)] * 4
    assert carried(taps[4]) == sun_of(WITHOUT_FILE)


def test_a_torn_read_asks_for_another_tap_and_sends_nothing(
    gateway: PlayedGateway, gate: SimReader
) -> None:
    shown = tap(gate, BAND, "torn")
    assert (shown.pattern, shown.text) == ("retry", "Please tap again")
    assert shown.ms < DEADLINE_MS / 2, "asked at once, not after waiting for a reply"
    gateway.sent(0)
    # A torn read between a tap that got no reply and its resend leaves that operation alone.
    assert tap(gate, BAND, ndef(WITHOUT_FILE)).pattern == "retry"  # no reply
    assert tap(gate, BAND, "torn").pattern == "retry"
    gateway.answer = grant
    assert tap(gate, BAND, ndef(LRP)).pattern == "green"
    first, resent = gateway.sent(2)
    assert (resent.mid, resent.ts) == (first.mid, first.ts)


def test_a_resend_carries_the_fresh_sun_read_of_its_own_tap(
    gateway: PlayedGateway, gate: SimReader
) -> None:
    """The same band again after no reply is the same operation (mid, ts), with this tap's read:
    the band's counter moved on, and the gateway answers a known mid from its store."""
    assert tap(gate, BAND, ndef(WITHOUT_FILE)).pattern == "retry"
    gateway.answer = grant
    assert tap(gate, BAND, ndef(WITH_FILE)).pattern == "green"
    first, resent = gateway.sent(2)
    assert (resent.mid, resent.ts) == (first.mid, first.ts)
    assert carried(first) == sun_of(WITHOUT_FILE) and carried(resent) == sun_of(WITH_FILE)


def test_a_pos_tap_carries_sun_and_its_pin_resend_the_same_read(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A tap the gateway declines for want of a PIN is sent again with the PIN once typed: with
    the SUN read of the tap that started it (the band may be gone while the guest types)."""
    pin_key = reader_pin_key(b"the gateway's secret key, 32+ chars", "till-1")
    gateway = PlayedGateway(broker, "till-1", tmp_path)
    gateway.answer = lambda tap: (
        paid(tap, "Paid", 100)
        if tap.pin
        else refuse(tap, reasons.PIN_REQUIRED, "PIN", messages.PIN)
    )
    till = sim_reader("till-1", broker, tmp_path, role="pos", pin_key=pin_key, heap=DEFAULT_HEAP)
    try:
        with till:
            till.wait_online()
            gateway.wait_births(1)
            gateway.command(
                messages.CHARGE, charge=os.urandom(16), amount=450, currency="EUR", label="Tea"
            )
            till.wait_show("idle", "Tea")
            assert tap(till, BAND, ndef(LRP)).pattern == "pin"
            assert till.press("1234#").text == "Paid"
            first, with_pin = gateway.sent(2)
    finally:
        gateway.close()
    assert first.pin is None and with_pin.pin is not None
    assert carried(first) == carried(with_pin) == sun_of(LRP)
