"""NTAG 424 DNA's command set as both sides speak it (NXP NT4H2421Gx, AN12196): the APDUs
``bandlink band enrol`` sends, and the AES secure messaging of an EV2 session, which the reader
(tools/enrol.py) and the emulated chip (tools/ntag424_emulator.py) share so that neither has its
own copy of the byte layouts.

An EV2 session starts with AuthenticateEV2First: each side proves the key by encrypting the
other's random number, and both derive two session keys (SesAuthENCKey, SesAuthMACKey) from
the key and the two randoms. Every command after it counts (CmdCtr, 2 bytes little-endian,
bound with the transaction identifier TI into every MAC and IV), so a command replayed or
taken from another session does not verify. CommMode.Full sends the data encrypted (AES-CBC
under SesAuthENCKey, padded ISO 9797-1 method 2) and MACed (CMAC under SesAuthMACKey truncated
to its odd bytes, MACt); the chip answers MACed too.
"""

from __future__ import annotations

import hmac
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from bandlink.gateway.core.aes import (
    BLOCK,
    ZERO_BLOCK,
    cbc_decrypt,
    cbc_encrypt,
    cmac,
    encrypt_block,
)

KEY_SIZE = 16
FACTORY_KEY = bytes(KEY_SIZE)  # every key of a factory-fresh chip
NDEF_APP = bytes.fromhex("D2760000850101")  # the NDEF application's DF name (NFC Forum T4T v2)
CC_FILE, NDEF_FILE, PROPRIETARY_FILE = 1, 2, 3  # file numbers
FILE_IDS = {CC_FILE: 0xE103, NDEF_FILE: 0xE104, PROPRIETARY_FILE: 0xE105}  # ISO file ids
MAC_T = 8  # MACt: 8 of the CMAC's 16 bytes

# Native command codes (CLA 90) and the status words the chip answers with (SW1 91).
AUTH_FIRST, ADDITIONAL_FRAME, CHANGE_KEY, CHANGE_FILE_SETTINGS, WRITE_DATA = (
    0x71,
    0xAF,
    0xC4,
    0x5F,
    0x8D,
)
OK, MORE = 0x9100, 0x91AF
INTEGRITY_ERROR, LENGTH_ERROR, PERMISSION_DENIED, PARAMETER_ERROR = 0x911E, 0x917E, 0x919D, 0x919E
ILLEGAL_COMMAND, AUTHENTICATION_ERROR, BOUNDARY_ERROR, NO_SUCH_KEY = 0x911C, 0x91AE, 0x91BE, 0x9140
ISO_OK, ISO_NOT_FOUND, ISO_SECURITY, ISO_WRONG_PARAMS = 0x9000, 0x6A82, 0x6982, 0x6B00
ISO_WRONG_LENGTH, ISO_NO_INS = 0x6700, 0x6D00

# Access rights: a key number 0..4, or these.
FREE, NO_ACCESS = 0xE, 0xF
PLAIN, MAC, FULL = 0x00, 0x01, 0x03  # CommMode, FileOption's low bits
_SDM_ENABLED = 0x40
_SDM_UID, _SDM_READ_CTR, _SDM_READ_CTR_LIMIT, _SDM_ENC_FILE, _SDM_ASCII = (
    0x80,
    0x40,
    0x20,
    0x10,
    0x01,
)
# Session vectors' labels (NT4H2421Gx 9.1.7) and the IVs' (9.1.4).
_SV_ENC, _SV_MAC, _SV_TAIL = b"\xa5\x5a", b"\x5a\xa5", bytes.fromhex("00010080")
_IV_CMD, _IV_RESP = b"\xa5\x5a", b"\x5a\xa5"


class SecureMessagingError(ValueError):
    """A MAC that does not verify, or a padding that is not ISO 9797-1 method 2."""


def status_name(sw: int) -> str:
    return _STATUS_NAMES.get(sw, f"status {sw:04X}")


_STATUS_NAMES = {
    INTEGRITY_ERROR: "INTEGRITY_ERROR (a MAC did not verify)",
    LENGTH_ERROR: "LENGTH_ERROR",
    PERMISSION_DENIED: "PERMISSION_DENIED",
    PARAMETER_ERROR: "PARAMETER_ERROR",
    ILLEGAL_COMMAND: "ILLEGAL_COMMAND_CODE",
    AUTHENTICATION_ERROR: "AUTHENTICATION_ERROR",
    BOUNDARY_ERROR: "BOUNDARY_ERROR",
    NO_SUCH_KEY: "NO_SUCH_KEY",
    ISO_NOT_FOUND: "file or application not found",
    ISO_SECURITY: "security status not satisfied",
}


# -- APDUs ------------------------------------------------------------------------------------


def native(ins: int, data: bytes = b"") -> bytes:
    """A native command wrapped as ISO 7816-4 (CLA 90, P1 P2 00, Lc if data, Le 00)."""
    lc = bytes([len(data)]) + data if data else b""
    return bytes([0x90, ins, 0x00, 0x00]) + lc + b"\x00"


def select_application() -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x0C, len(NDEF_APP)]) + NDEF_APP + b"\x00"


def select_file(file_id: int) -> bytes:
    return bytes([0x00, 0xA4, 0x00, 0x0C, 0x02]) + file_id.to_bytes(2, "big")


def read_binary(offset: int = 0, length: int = 0) -> bytes:
    """ISOReadBinary of the selected file; ``length`` 0 means as much as one answer holds."""
    return bytes([0x00, 0xB0]) + offset.to_bytes(2, "big") + bytes([length & 0xFF])


def split_response(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise SecureMessagingError("an answer without a status word")
    return response[:-2], int.from_bytes(response[-2:], "big")


# -- padding, rotation, CRC ---------------------------------------------------------------------


def pad(data: bytes) -> bytes:
    """ISO 9797-1 method 2: always 0x80, then zeros to a whole block (a full block if need be)."""
    return data + b"\x80" + bytes(-(len(data) + 1) % BLOCK)


def unpad(data: bytes) -> bytes:
    end = data.rstrip(b"\x00")
    if not data or len(data) % BLOCK or not end.endswith(b"\x80") or len(data) - len(end) >= BLOCK:
        raise SecureMessagingError("padding is not ISO 9797-1 method 2")
    return end[:-1]


def rotate_left(data: bytes) -> bytes:
    return data[1:] + data[:1]


def crc32_nk(key: bytes) -> bytes:
    """ChangeKey's CRC32 of the new key: the IEEE CRC32 without its final inversion (JAMCRC),
    least significant byte first."""
    return (zlib.crc32(key) ^ 0xFFFFFFFF).to_bytes(4, "little")


def mac_t(key: bytes, data: bytes) -> bytes:
    return cmac(key, data)[1::2]  # the odd-indexed bytes (NT4H2421Gx 9.1.3)


# -- AuthenticateEV2First ---------------------------------------------------------------------


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey): CMACs of SV1 and SV2, which interleave RndA and RndB
    (NT4H2421Gx 9.1.7): RndA[15..14] || (RndA[13..8] XOR RndB[15..10]) || RndB[9..0] ||
    RndA[7..0], counting bytes from the most significant (the first)."""
    mixed = rnd_a[0:2] + bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    body = _SV_TAIL + mixed + rnd_b[6:16] + rnd_a[8:16]
    return cmac(key, _SV_ENC + body), cmac(key, _SV_MAC + body)


def auth_first(key_no: int) -> bytes:
    return native(AUTH_FIRST, bytes([key_no, 0x00]))  # LenCap 0: no PCDcap2


def auth_answer(key: bytes, encrypted_rnd_b: bytes, rnd_a: bytes) -> tuple[bytes, bytes]:
    """Part 2 of the PCD: (the APDU with E(key, RndA || RndB rotated left by one), RndB)."""
    rnd_b = cbc_decrypt(key, ZERO_BLOCK, encrypted_rnd_b)
    encrypted = cbc_encrypt(key, ZERO_BLOCK, rnd_a + rotate_left(rnd_b))
    return native(ADDITIONAL_FRAME, encrypted), rnd_b


def auth_result(key: bytes, rnd_a: bytes, rnd_b: bytes, answer: bytes) -> Session:
    """The session the chip's last answer opens; SecureMessagingError if it did not see RndA."""
    plain = cbc_decrypt(key, ZERO_BLOCK, answer)
    if plain[4:20] != rotate_left(rnd_a):
        raise SecureMessagingError("the chip did not return RndA: not this key")
    enc, mac = session_keys(key, rnd_a, rnd_b)
    return Session(enc, mac, ti=plain[:4])


# -- the session ------------------------------------------------------------------------------


@dataclass
class Session:
    """One EV2 session: both sides hold one, each advancing ``counter`` once per command."""

    enc_key: bytes
    mac_key: bytes
    ti: bytes
    counter: int = 0
    key_no: int = 0

    def _ctr(self) -> bytes:
        return self.counter.to_bytes(2, "little")

    def _iv(self, label: bytes) -> bytes:
        return encrypt_block(self.enc_key, label + self.ti + self._ctr() + bytes(8))

    def command_mac(self, ins: int, header: bytes, data: bytes) -> bytes:
        return mac_t(self.mac_key, bytes([ins]) + self._ctr() + self.ti + header + data)

    def response_mac(self, status: int, data: bytes) -> bytes:
        """The MACt of an answer, at the counter after the command (call after ``step``)."""
        return mac_t(self.mac_key, bytes([status]) + self._ctr() + self.ti + data)

    def step(self) -> None:
        self.counter = (self.counter + 1) & 0xFFFF

    # the PCD's side

    def full_command(self, ins: int, header: bytes, data: bytes) -> bytes:
        """A CommMode.Full command: header in clear, data encrypted, MACt over both."""
        encrypted = cbc_encrypt(self.enc_key, self._iv(_IV_CMD), pad(data)) if data else b""
        return native(ins, header + encrypted + self.command_mac(ins, header, encrypted))

    def check_answer(self, body: bytes, status: int = 0x00) -> bytes:
        """Step the counter and check a MACed answer; its data (decrypted if any)."""
        self.step()
        if len(body) < MAC_T or self.response_mac(status, body[:-MAC_T]) != body[-MAC_T:]:
            raise SecureMessagingError("the answer's MAC does not verify")
        data = body[:-MAC_T]
        return unpad(cbc_decrypt(self.enc_key, self._iv(_IV_RESP), data)) if data else b""

    # the chip's side

    def open_command(self, ins: int, header: bytes, body: bytes, *, encrypted: bool) -> bytes:
        """Check a command's MACt and return its data (decrypted when ``encrypted``)."""
        data, mac = body[:-MAC_T], body[-MAC_T:]
        if len(body) < MAC_T or not hmac.compare_digest(self.command_mac(ins, header, data), mac):
            raise SecureMessagingError("the command's MAC does not verify")
        if not encrypted or not data:
            return data
        return unpad(cbc_decrypt(self.enc_key, self._iv(_IV_CMD), data))

    def answer(self, data: bytes = b"", *, encrypted: bool = False) -> bytes:
        """Step the counter; the answer's body (data, encrypted if asked) and MACt, then 91 00."""
        self.step()
        if encrypted and data:
            data = cbc_encrypt(self.enc_key, self._iv(_IV_RESP), pad(data))
        return data + self.response_mac(0x00, data) + OK.to_bytes(2, "big")


# -- commands in a session --------------------------------------------------------------------


def change_key_data(key_no: int, new: bytes, version: int, old: bytes | None) -> bytes:
    """ChangeKey's plain data: the session's own key is sent as it is (the session proves the
    caller holds it); any other as new XOR old with a CRC32 of the new key, so that only
    someone who knows the old key can set the new one."""
    if old is None:
        return new + bytes([version])
    return bytes(a ^ b for a, b in zip(new, old, strict=True)) + bytes([version]) + crc32_nk(new)


def write_data_header(file_no: int, offset: int, length: int) -> bytes:
    return bytes([file_no]) + offset.to_bytes(3, "little") + length.to_bytes(3, "little")


@dataclass(frozen=True)
class Sdm:
    """Secure Dynamic Messaging of a file, as bandlink uses it: the UID and read counter
    mirrored encrypted (PICC data) and a CMAC, both as ASCII hex in the file's text."""

    meta_read: int  # key that encrypts the PICC data
    file_read: int  # key the CMAC's session key derives from
    picc_offset: int
    mac_input_offset: int
    mac_offset: int
    counter_access: int = NO_ACCESS  # who may read the counter (GetFileCounters)


@dataclass(frozen=True)
class FileSettings:
    comm_mode: int
    read: int
    write: int
    read_write: int
    change: int
    sdm: Sdm | None = None

    def encode(self) -> bytes:
        """ChangeFileSettings' data (NT4H2421Gx 10.7.1): FileOption, AccessRights (2 bytes:
        RW<<4|Change, Read<<4|Write), then for SDM its options, its access rights (RFU<<4|
        CtrRet, MetaRead<<4|FileRead) and the 3-byte offsets its options call for."""
        option = self.comm_mode | (_SDM_ENABLED if self.sdm else 0)
        out = bytes([option, self.read_write << 4 | self.change, self.read << 4 | self.write])
        if self.sdm is None:
            return out
        sdm = self.sdm
        out += bytes([_SDM_UID | _SDM_READ_CTR | _SDM_ASCII])
        out += bytes([0xF0 | sdm.counter_access, sdm.meta_read << 4 | sdm.file_read])
        for offset in (sdm.picc_offset, sdm.mac_input_offset, sdm.mac_offset):
            out += offset.to_bytes(3, "little")
        return out

    @classmethod
    def decode(cls, data: bytes) -> FileSettings:
        """The settings in ``data``; ValueError for what this module does not model (plain
        UID or counter mirrors, encrypted file data, a read counter limit)."""
        if len(data) < 3:
            raise ValueError("file settings are at least 3 bytes")
        option, rw_change, read_write = data[0], data[1], data[2]
        sdm = None
        if option & _SDM_ENABLED:
            sdm = _decode_sdm(data[3:])
        elif len(data) != 3:
            raise ValueError("file settings without SDM are 3 bytes")
        return cls(
            comm_mode=option & 0x03,
            read=read_write >> 4,
            write=read_write & 0x0F,
            read_write=rw_change >> 4,
            change=rw_change & 0x0F,
            sdm=sdm,
        )


def _decode_sdm(data: bytes) -> Sdm:
    wanted = _SDM_UID | _SDM_READ_CTR | _SDM_ASCII
    if len(data) != 12 or data[0] != wanted:
        raise ValueError("only encrypted UID and counter mirrors with a CMAC are modelled")
    meta, file_read = data[2] >> 4, data[2] & 0x0F
    if data[1] >> 4 != 0x0F or meta > 4 or file_read > 4:
        raise ValueError("SDM meta read and file read are keys 0..4 here")
    picc, mac_input, mac = (int.from_bytes(data[i : i + 3], "little") for i in (3, 6, 9))
    return Sdm(meta, file_read, picc, mac_input, mac, counter_access=data[1] & 0x0F)


Random = Callable[[int], bytes]
random_bytes: Random = os.urandom
