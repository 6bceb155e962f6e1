"""Secure Unique NFC (SUN, NXP AN12196): how a band proves a tap.

On every read the band (NTAG 424 DNA) writes into its NDEF URL the PICC data (its UID and a
read counter, encrypted under the SDM meta read key), optionally file data encrypted under a
session key, and a CMAC truncated to 8 bytes under a session key derived from its SDM file read
key, its UID and the counter. Both AES mode and LRP mode (AN12304) are verified here;
``seal`` is the band's side, for emulated bands and for tests.

Replays are not this module's business: a reading that verifies is a reading the band made,
once. The caller keeps the last counter per band and refuses one that does not increase.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from bandlink.protocol import reasons

from ..aes import BLOCK, ZERO_BLOCK, cbc_decrypt, cbc_encrypt, cmac, encrypt_block
from .lrp import Lrp

AES, LRP = "aes", "lrp"
PICC_SIZE = {AES: 16, LRP: 24}
MAC_SIZE = 8
BAD_MAC = reasons.name(reasons.BAD_MAC)  # what every failure here is refused with
COUNTER_MAX = (1 << 24) - 1
_UID_MIRRORED, _COUNTER_MIRRORED, _UID_LENGTH = 0x80, 0x40, 0x0F
_LRP_RAND = 8
# Session vectors (AN12196 table 4, AN12304 section 3): a prefix, then UID || counter.
_SV1_ENC = bytes.fromhex("c33c00010080")
_SV2_MAC = bytes.fromhex("3cc300010080")
_SV_LRP = bytes.fromhex("00010080")
_SV_LRP_END = bytes.fromhex("1ee1")


class SunError(ValueError):
    """The reading does not verify: wrong key, altered bytes, or not a SUN message at all."""

    reason = BAD_MAC


@dataclass(frozen=True, slots=True)
class SunReading:
    uid: bytes
    counter: int
    mode: str
    file_data: bytes | None = None


FileKey = Callable[[bytes], bytes]  # a band's SDM file read key, by UID


def verify(
    meta_key: bytes,
    file_key: FileKey,
    picc: bytes,
    mac: bytes,
    *,
    enc: bytes | None = None,
    mac_input: bytes | None = None,
) -> SunReading:
    """Decrypt the PICC data, check the CMAC and decrypt the file data; SunError if any of it
    fails. ``mac_input`` defaults to what a bandlink Tap implies (``wire_mac_input``)."""
    mode = _mode_of(picc)
    uid, counter = _open_picc(mode, meta_key, picc)
    return _check(mode, file_key(uid), uid, counter, mac, enc=enc, mac_input=mac_input)


def verify_plain(
    file_key: bytes, uid: bytes, counter: int, mac: bytes, *, mac_input: bytes = b""
) -> SunReading:
    """A band that mirrors its UID and counter in clear (AES mode): only the CMAC proves it."""
    ctr = _counter_bytes(counter)
    return _check(AES, file_key, uid, ctr, mac, enc=None, mac_input=mac_input)


def wire_mac_input(enc: bytes | None) -> bytes:
    """What a bandlink band's CMAC covers, given the file data a Tap carries: its URL from the
    file data up to the CMAC, ``<ENC as uppercase hex>&cmac=`` (SPEC, "Proving a band"); with
    no file data, nothing (the CMAC then covers only the session key: the UID and counter)."""
    return b"" if enc is None else enc.hex().upper().encode() + b"&cmac="


def seal(
    mode: str,
    meta_key: bytes,
    file_key: bytes,
    uid: bytes,
    counter: int,
    *,
    file_data: bytes | None = None,
    mac_input: bytes | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, bytes | None, bytes]:
    """The band's side: (picc, enc, cmac) for one read. ``file_data`` is whole blocks."""
    if not 0 <= counter <= COUNTER_MAX or not 4 <= len(uid) <= 10:
        raise ValueError("counter is 3 bytes and the UID 4 to 10")
    ctr = _counter_bytes(counter)
    plain = bytes([_UID_MIRRORED | _COUNTER_MIRRORED | len(uid)]) + uid + ctr
    plain += random(BLOCK - len(plain))
    if mode == AES:
        picc = cbc_encrypt(meta_key, ZERO_BLOCK, plain)
    else:
        rand = random(_LRP_RAND)
        picc = rand + Lrp(meta_key).encrypt(rand, plain)
    enc = None
    if file_data is not None:
        enc = _file_cipher(mode, file_key, uid, ctr, file_data, encrypt=True)
    inputs = wire_mac_input(enc) if mac_input is None else mac_input
    return picc, enc, _mac(mode, file_key, uid, ctr, inputs)


# -- URLs -------------------------------------------------------------------------------------

_PARAM = re.compile(r"[?&](picc_data|e|enc|cmac|uid|ctr)=([0-9A-Fa-f]*)")


@dataclass(frozen=True, slots=True)
class SunUrl:
    """The SUN parameters of a band's URL, and the part of it the CMAC covers."""

    mac: bytes
    mac_input: bytes
    picc: bytes | None = None
    enc: bytes | None = None
    uid: bytes | None = None  # a plain mirror's
    counter: int | None = None


def parse_url(url: str) -> SunUrl:
    """``...?picc_data=..&cmac=..`` (``e=`` is the same), with ``&enc=..`` file data before the
    CMAC, or a plain mirror ``...?uid=..&ctr=..&cmac=..``. ValueError if it is none of them."""
    text = unquote(url.strip())
    found = {m.group(1): m for m in _PARAM.finditer(text)}
    if "e" in found and "picc_data" not in found:
        found["picc_data"] = found.pop("e")
    mac = found.get("cmac")
    if mac is None or len(mac.group(2)) != 2 * MAC_SIZE:
        raise ValueError("no cmac= of 16 hex digits in the URL")
    enc = found.get("enc")
    # The CMAC covers the URL from the file data up to its own value (SDMMACInputOffset).
    mac_input = text[enc.start(2) : mac.start(2)].encode() if enc else b""
    values = {name: _hex(name, m.group(2)) for name, m in found.items()}
    if "picc_data" in values:
        return SunUrl(values["cmac"], mac_input, picc=values["picc_data"], enc=values.get("enc"))
    if "uid" in values and "ctr" in values:
        # A plain mirror shows the counter most significant byte first.
        counter = int.from_bytes(values["ctr"], "big")
        return SunUrl(values["cmac"], mac_input, uid=values["uid"], counter=counter)
    raise ValueError("no picc_data= (or e=), nor uid= and ctr=, in the URL")


def _hex(name: str, digits: str) -> bytes:
    if len(digits) % 2:
        raise ValueError(f"{name}= has an odd number of hex digits")
    return bytes.fromhex(digits)


# -- the two modes ----------------------------------------------------------------------------


def _mode_of(picc: bytes) -> str:
    for mode, size in PICC_SIZE.items():
        if len(picc) == size:
            return mode
    raise SunError("PICC data is 16 bytes (AES mode) or 24 (LRP mode)")


def _open_picc(mode: str, meta_key: bytes, picc: bytes) -> tuple[bytes, bytes]:
    if mode == AES:
        plain = cbc_decrypt(meta_key, ZERO_BLOCK, picc)
    else:
        plain = Lrp(meta_key).decrypt(picc[:_LRP_RAND], picc[_LRP_RAND:])
    tag, length = plain[0], plain[0] & _UID_LENGTH
    # Both the UID and the counter must be mirrored: the session key is bound to them.
    if tag & 0xF0 != _UID_MIRRORED | _COUNTER_MIRRORED or not 4 <= length <= 10:
        raise SunError("the PICC data does not decrypt to a UID and counter")
    return plain[1 : 1 + length], plain[1 + length : 4 + length]


def _check(
    mode: str,
    file_key: bytes,
    uid: bytes,
    ctr: bytes,
    mac: bytes,
    *,
    enc: bytes | None,
    mac_input: bytes | None,
) -> SunReading:
    inputs = wire_mac_input(enc) if mac_input is None else mac_input
    if not hmac.compare_digest(_mac(mode, file_key, uid, ctr, inputs), mac):
        raise SunError("the CMAC does not verify")
    data = None
    if enc is not None:
        if not enc or len(enc) % BLOCK:
            raise SunError("file data is whole 16-byte blocks")
        data = _file_cipher(mode, file_key, uid, ctr, enc, encrypt=False)
    return SunReading(uid, int.from_bytes(ctr, "little"), mode, data)


def _mac(mode: str, file_key: bytes, uid: bytes, ctr: bytes, mac_input: bytes) -> bytes:
    if mode == AES:
        full = cmac(cmac(file_key, _vector(_SV2_MAC, uid, ctr)), mac_input)
    else:
        full = Lrp(_lrp_session(file_key, uid, ctr)).cmac(mac_input)
    return full[1::2]  # SDMMAC: the odd-indexed bytes (AN12196's S14 || S12 || ... || S0)


def _file_cipher(
    mode: str, file_key: bytes, uid: bytes, ctr: bytes, data: bytes, *, encrypt: bool
) -> bytes:
    if mode == AES:
        key = cmac(file_key, _vector(_SV1_ENC, uid, ctr))
        iv = encrypt_block(key, ctr + bytes(BLOCK - len(ctr)))
        return (cbc_encrypt if encrypt else cbc_decrypt)(key, iv, data)
    lrp = Lrp(_lrp_session(file_key, uid, ctr), 1)
    counter = ctr + bytes(3)
    return lrp.encrypt(counter, data) if encrypt else lrp.decrypt(counter, data)


def _lrp_session(file_key: bytes, uid: bytes, ctr: bytes) -> bytes:
    body = _SV_LRP + uid + ctr
    padding = -(len(body) + len(_SV_LRP_END)) % BLOCK
    return Lrp(file_key).cmac(body + bytes(padding) + _SV_LRP_END)


def _vector(prefix: bytes, uid: bytes, ctr: bytes) -> bytes:
    body = prefix + uid + ctr
    return body + bytes(-len(body) % BLOCK)


def _counter_bytes(counter: int) -> bytes:
    return counter.to_bytes(3, "little")  # least significant byte first, as the chip keeps it
