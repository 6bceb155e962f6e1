"""``bandlink band sun-verify``: what an operator runs on a disputed band's URL."""

from __future__ import annotations

import json

import pytest

from bandlink.gateway.core.bands import sun
from bandlink.tools.cli import main
from bandlink.tools.sunband import SunBand, SunBands

MASTER = bytes(range(16))
UID = bytes.fromhex("04a1b2c3d4e5f6")


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    status = main(["band", "sun-verify", *args])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("mode", [sun.AES, sun.LRP])
def test_a_band_url_verifies_with_the_master_key(
    capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    band = SunBands(MASTER, mode=mode).band(UID)
    band.file_data = b"bandlink-0000001"
    band.url()
    url = band.url()  # the second read
    status, report = _verify(capsys, "--master", "--key", MASTER.hex(), url)
    assert status == 0
    assert report == {
        "uid": UID.hex().upper(),
        "counter": 2,
        "mode": mode,
        "file_data": b"bandlink-0000001".hex().upper(),
        "file_text": "bandlink-0000001",
        "valid": True,
        "reason": "ok",
    }


def test_a_changed_url_or_the_wrong_key_is_bad_mac(capsys: pytest.CaptureFixture[str]) -> None:
    url = SunBands(MASTER).band(UID).url()
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    status, report = _verify(capsys, "--master", "--key", MASTER.hex(), forged)
    assert (status, report["valid"], report["reason"]) == (1, False, "bad_mac")
    # The master used as if it were the band's own key: the band was not made with it.
    status, report = _verify(capsys, "--key", MASTER.hex(), url)
    assert (status, report["reason"], report["uid"]) == (1, "bad_mac", None)


def test_separate_meta_and_file_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """The third-party vector with two custom keys, through the command line."""
    meta, file_key = "42AFF114F2CB3B6141BE6DC95DFC5416", "B62A9BAF092439BD43C62AEE96B970C5"
    picc, _enc, mac = sun.seal(sun.AES, bytes.fromhex(meta), bytes.fromhex(file_key), UID, 9)
    url = f"https://x/b?picc_data={picc.hex()}&cmac={mac.hex()}"
    status, report = _verify(capsys, "--key", meta, "--file-key", file_key, url)
    assert (status, report["counter"]) == (0, 9)
    status, report = _verify(capsys, "--key", meta, url)
    assert (status, report["reason"]) == (1, "bad_mac")


def test_not_a_sun_url_and_bad_keys(capsys: pytest.CaptureFixture[str]) -> None:
    status, report = _verify(capsys, "--key", MASTER.hex(), "https://bandlink.example/b")
    assert (status, report["reason"]) == (1, "malformed")
    assert main(["band", "sun-verify", "--key", "abcd", "https://x/?cmac=00"]) == 2
    assert "16 bytes" in capsys.readouterr().err


def test_the_band_counts_its_reads() -> None:
    band = SunBand(UID, SunBands(MASTER).keys, counter=41)
    readings = [band.read() for _ in range(3)]
    keys = band.keys
    counters = [
        sun.verify(keys.meta_read, keys.file_read, picc, mac).counter
        for picc, _enc, mac in readings
    ]
    assert counters == [42, 43, 44]
