"""``bandlink band``: the operator's tools for bands. ``sun-verify`` checks one SUN URL, the
tool for a disputed band: who it is, which read it was, and whether the band really made it."""

from __future__ import annotations

import json

from bandlink.gateway.core.bands import sun
from bandlink.gateway.core.bands.keys import KEY_SIZE, BandKeys

MALFORMED = "malformed"  # not a SUN URL at all (the JSON's reason, beside sun.BAD_MAC)


class Keys:
    """The keys to verify with: a master (every band's keys derived from it), or a band's
    SDM meta read key, with its file read key when that differs."""

    def __init__(self, key: bytes, master: bool = False, file_key: bytes | None = None) -> None:
        self._derived = BandKeys(key) if master else None
        self._key = key
        self._file_key = file_key or key

    def meta_read(self) -> bytes:
        return self._derived.meta_read if self._derived else self._key

    def file_read(self, uid: bytes) -> bytes:
        return self._derived.file_read(uid) if self._derived else self._file_key


def parse_key(text: str) -> bytes:
    key = bytes.fromhex(text)
    if len(key) != KEY_SIZE:
        raise ValueError(f"a key is {KEY_SIZE} bytes ({2 * KEY_SIZE} hex digits)")
    return key


def sun_verify(url: str, keys: Keys) -> dict[str, object]:
    """What ``band sun-verify`` prints: uid, counter, mode, file data, valid, reason."""
    report: dict[str, object] = {"uid": None, "counter": None, "mode": None, "file_data": None}
    try:
        parsed = sun.parse_url(url)
    except ValueError as err:
        return report | {"valid": False, "reason": MALFORMED, "detail": str(err)}
    try:
        if parsed.picc is not None:
            reading = sun.verify(
                keys.meta_read(),
                keys.file_read,
                parsed.picc,
                parsed.mac,
                enc=parsed.enc,
                mac_input=parsed.mac_input,
            )
        else:
            assert parsed.uid is not None and parsed.counter is not None
            key = keys.file_read(parsed.uid)
            reading = sun.verify_plain(
                key, parsed.uid, parsed.counter, parsed.mac, mac_input=parsed.mac_input
            )
    except sun.SunError as err:
        return report | {"valid": False, "reason": err.reason, "detail": str(err)}
    data = reading.file_data
    return {
        "uid": reading.uid.hex().upper(),
        "counter": reading.counter,
        "mode": reading.mode,
        "file_data": None if data is None else data.hex().upper(),
        "file_text": None if data is None else data.decode("ascii", "replace"),
        "valid": True,
        "reason": "ok",
    }


def print_report(report: dict[str, object]) -> int:
    print(json.dumps(report, indent=2))
    return 0 if report["valid"] else 1
