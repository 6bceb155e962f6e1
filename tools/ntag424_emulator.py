"""An emulated NTAG 424 DNA, for testing ``bandlink band enrol`` without a chip: its state
(UID, five AES keys with versions, three files with their settings, the SDM read counter) and
the APDUs enrolment and a phone send, answered as NT4H2421Gx describes. What it refuses, a real
chip refuses too: a wrong key in AuthenticateEV2First (91 AE), a command that needs a session
without one (91 AE), a MAC that does not verify (91 1E, and the session is over), a file
access its rights do not grant (91 9D, 69 82 for the ISO commands).

``UdpCard`` puts it behind nfcpy's ``udp`` driver on the listen side, so a reader opened with
``udp:localhost:PORT`` finds a Type 4A tag there: nfcpy answers anticollision (SENS_REQ,
SDD_REQ, SEL_REQ) from the target we give it; this module answers RATS and the ISO 14443-4
blocks (I-blocks with chaining both ways, R(ACK), R(NAK), S(DESELECT)).

Two points the datasheet leaves open are this emulator's reading of AN12196: a WriteData in a
session comes in CommMode.Full when the file is Full or its write right is free (AN12196 writes
a factory NDEF file, free write access, that way), else in the file's own mode (it writes the
CC file, write key 0, plain); every unauthenticated read of an SDM file counts one read.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nfc  # type: ignore[import-untyped]
import nfc.clf  # type: ignore[import-untyped]

from bandlink.gateway.core.aes import ZERO_BLOCK, cbc_decrypt, cbc_encrypt
from bandlink.gateway.core.bands import sun

from . import ntag424 as n

KEYS = 5
# The CC file of a factory chip (NFC Forum T4T mapping 2.0): MLe 256, MLc 255, the NDEF file
# E104 of 256 bytes (read and write free), the proprietary file E105 of 128 bytes (keys 2, 3).
FACTORY_CC = bytes.fromhex("001720010000FF0406E10401000000" + "0506E10500808283") + bytes(9)
FACTORY_SETTINGS = {
    n.CC_FILE: n.FileSettings(n.PLAIN, read=n.FREE, write=0, read_write=0, change=0),
    n.NDEF_FILE: n.FileSettings(n.PLAIN, read=n.FREE, write=n.FREE, read_write=n.FREE, change=0),
    n.PROPRIETARY_FILE: n.FileSettings(n.FULL, read=2, write=3, read_write=3, change=0),
}
FILE_SIZES = {n.CC_FILE: 32, n.NDEF_FILE: 256, n.PROPRIETARY_FILE: 128}
_TI_SIZE = 4


def _sw(status: int) -> bytes:
    return status.to_bytes(2, "big")


class Refused(Exception):
    """A command the chip answers with an error status (and nothing else)."""

    def __init__(self, status: int) -> None:
        super().__init__(n.status_name(status))
        self.status = status


@dataclass
class Ntag424:
    """The chip: call ``apdu`` with each command APDU, get the response APDU."""

    uid: bytes
    keys: list[bytes] = field(default_factory=lambda: [n.FACTORY_KEY] * KEYS)
    key_versions: list[int] = field(default_factory=lambda: [0] * KEYS)
    files: dict[int, bytearray] = field(default_factory=dict)
    settings: dict[int, n.FileSettings] = field(default_factory=lambda: dict(FACTORY_SETTINGS))
    sdm_counter: int = 0
    random: n.Random = n.random_bytes
    commands: list[bytes] = field(default_factory=list)  # every APDU received, for tests
    _app: bool = field(default=False, init=False, repr=False)
    _file: int | None = field(default=None, init=False, repr=False)
    _session: n.Session | None = field(default=None, init=False, repr=False)
    # (key, RndB) between the two parts of AuthenticateEV2First
    _pending: tuple[int, bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for number, size in FILE_SIZES.items():
            self.files.setdefault(number, bytearray(size))
        if not any(self.files[n.CC_FILE]):
            self.files[n.CC_FILE][: len(FACTORY_CC)] = FACTORY_CC

    def apdu(self, command: bytes) -> bytes:
        self.commands.append(bytes(command))
        try:
            return self._dispatch(command)
        except Refused as refused:
            if refused.status == n.INTEGRITY_ERROR:
                self._session = None  # a bad MAC ends the session, as on the chip
            return _sw(refused.status)

    def _dispatch(self, command: bytes) -> bytes:
        if len(command) < 4:
            return _sw(n.ISO_WRONG_LENGTH)
        cla, ins = command[0], command[1]
        if cla == 0x00:
            return self._iso(ins, command)
        if cla == 0x90 and self._app:
            handler = self._native.get(ins)
            if handler is not None:
                return handler(self, _iso_data(command))
        return _sw(n.ILLEGAL_COMMAND if cla == 0x90 else n.ISO_NO_INS)

    # -- ISO 7816-4 -----------------------------------------------------------------------

    def _iso(self, ins: int, command: bytes) -> bytes:
        if ins == 0xA4:
            return self._select(command)
        if ins == 0xB0 and self._app:
            return self._read_binary(command)
        if ins == 0xD6 and self._app:
            return self._update_binary(command)
        return _sw(n.ISO_NO_INS)

    def _select(self, command: bytes) -> bytes:
        p1, data = command[2], _iso_data(command)
        if p1 == 0x04 and data == n.NDEF_APP:
            self._app, self._file, self._session = True, None, None
            return _sw(n.ISO_OK)
        by_id = {file_id.to_bytes(2, "big"): no for no, file_id in n.FILE_IDS.items()}
        if p1 == 0x00 and self._app and data in by_id:
            self._file = by_id[data]
            return _sw(n.ISO_OK)
        return _sw(n.ISO_NOT_FOUND)

    def _iso_target(self, command: bytes) -> tuple[int, int]:
        """(file, offset) of ISOReadBinary or ISOUpdateBinary: a short file id in P1, or the
        selected file."""
        p1, p2 = command[2], command[3]
        if p1 & 0x80:
            file_no = p1 & 0x1F
            if file_no not in self.files:
                raise Refused(n.ISO_NOT_FOUND)
            self._file = file_no
            return file_no, p2
        if self._file is None:
            raise Refused(n.ISO_NOT_FOUND)
        return self._file, p1 << 8 | p2

    def _read_binary(self, command: bytes) -> bytes:
        file_no, offset = self._iso_target(command)
        if self.settings[file_no].read != n.FREE and self._session is None:
            raise Refused(n.ISO_SECURITY)
        content = self._read_view(file_no)
        wanted = command[4] if len(command) > 4 else 0
        if offset >= len(content):
            raise Refused(n.ISO_WRONG_PARAMS)
        end = len(content) if wanted == 0 else offset + wanted
        return content[offset:end] + _sw(n.ISO_OK)

    def _update_binary(self, command: bytes) -> bytes:
        file_no, offset = self._iso_target(command)
        if self.settings[file_no].write != n.FREE:
            raise Refused(n.ISO_SECURITY)
        self._store(file_no, offset, _iso_data(command))
        return _sw(n.ISO_OK)

    def _read_view(self, file_no: int) -> bytes:
        """The file as a reader sees it: an SDM file read outside a session counts one read
        and mirrors this read's PICC data and CMAC into the text."""
        content = bytearray(self.files[file_no])
        sdm = self.settings[file_no].sdm
        if sdm is None or self._session is not None:
            return bytes(content)
        self.sdm_counter += 1
        picc_size, mac_hex = 2 * sun.PICC_SIZE[sun.AES], 2 * sun.MAC_SIZE
        content[sdm.picc_offset : sdm.picc_offset + picc_size] = bytes(picc_size)
        mac_input = bytes(content[sdm.mac_input_offset : sdm.mac_offset])
        picc, _enc, mac = sun.seal(
            sun.AES,
            self.keys[sdm.meta_read],
            self.keys[sdm.file_read],
            self.uid,
            self.sdm_counter,
            mac_input=mac_input,
        )
        content[sdm.picc_offset : sdm.picc_offset + picc_size] = picc.hex().upper().encode()
        content[sdm.mac_offset : sdm.mac_offset + mac_hex] = mac.hex().upper().encode()
        return bytes(content)

    def _store(self, file_no: int, offset: int, data: bytes) -> None:
        if offset + len(data) > len(self.files[file_no]):
            raise Refused(n.BOUNDARY_ERROR)
        self.files[file_no][offset : offset + len(data)] = data

    # -- native commands ------------------------------------------------------------------

    def _auth_first(self, data: bytes) -> bytes:
        self._session = self._pending = None
        if len(data) < 2:
            raise Refused(n.LENGTH_ERROR)
        key_no = data[0]
        if key_no >= KEYS:
            raise Refused(n.NO_SUCH_KEY)
        rnd_b = self.random(16)
        self._pending = (key_no, rnd_b)
        return cbc_encrypt(self.keys[key_no], ZERO_BLOCK, rnd_b) + _sw(n.MORE)

    def _auth_part2(self, data: bytes) -> bytes:
        if self._pending is None:
            raise Refused(n.ILLEGAL_COMMAND)
        (key_no, rnd_b), self._pending = self._pending, None
        if len(data) != 32:
            raise Refused(n.LENGTH_ERROR)
        key = self.keys[key_no]
        plain = cbc_decrypt(key, ZERO_BLOCK, data)
        rnd_a = plain[:16]
        if plain[16:] != n.rotate_left(rnd_b):
            raise Refused(n.AUTHENTICATION_ERROR)  # the PCD does not hold this key
        ti = self.random(_TI_SIZE)
        enc, mac = n.session_keys(key, rnd_a, rnd_b)
        self._session = n.Session(enc, mac, ti, key_no=key_no)
        answer = ti + n.rotate_left(rnd_a) + bytes(12)  # PDcap2, PCDcap2: all zero
        return cbc_encrypt(key, ZERO_BLOCK, answer) + _sw(n.OK)

    def _session_for(self, key_no: int) -> n.Session:
        """The session, if it was opened with ``key_no``; the chip's refusal if not."""
        session = self._session
        if session is None:
            raise Refused(n.AUTHENTICATION_ERROR)
        if key_no != session.key_no:
            raise Refused(n.PERMISSION_DENIED)
        return session

    def _opened(self, session: n.Session, ins: int, header: bytes, body: bytes) -> bytes:
        try:
            return session.open_command(ins, header, body, encrypted=True)
        except n.SecureMessagingError:
            raise Refused(n.INTEGRITY_ERROR) from None

    def _change_key(self, data: bytes) -> bytes:
        session = self._session_for(0)  # the application master key changes every key
        if len(data) != 1 + 32 + n.MAC_T:
            raise Refused(n.LENGTH_ERROR)
        key_no = data[0]
        if key_no >= KEYS:
            raise Refused(n.NO_SUCH_KEY)
        plain = self._opened(session, n.CHANGE_KEY, data[:1], data[1:])
        if key_no == session.key_no:
            if len(plain) != 17:
                raise Refused(n.LENGTH_ERROR)
            self.keys[key_no], self.key_versions[key_no] = plain[:16], plain[16]
            self._session = None  # its key has changed: the session is over
            return _sw(n.OK)
        if len(plain) != 21:
            raise Refused(n.LENGTH_ERROR)
        new = bytes(a ^ b for a, b in zip(plain[:16], self.keys[key_no], strict=True))
        if n.crc32_nk(new) != plain[17:21]:
            raise Refused(n.INTEGRITY_ERROR)  # not XORed with this key's value
        self.keys[key_no], self.key_versions[key_no] = new, plain[16]
        return session.answer()

    def _change_file_settings(self, data: bytes) -> bytes:
        if not data or data[0] not in self.files:
            raise Refused(n.PARAMETER_ERROR)
        file_no = data[0]
        session = self._session_for(self.settings[file_no].change)
        plain = self._opened(session, n.CHANGE_FILE_SETTINGS, data[:1], data[1:])
        try:
            settings = n.FileSettings.decode(plain)
        except ValueError:
            raise Refused(n.PARAMETER_ERROR) from None
        if settings.sdm is not None and not _sdm_fits(settings.sdm, len(self.files[file_no])):
            raise Refused(n.PARAMETER_ERROR)
        self.settings[file_no] = settings
        return session.answer()

    def _write_data(self, data: bytes) -> bytes:
        if len(data) < 7 or data[0] not in self.files:
            raise Refused(n.PARAMETER_ERROR)
        file_no, header = data[0], data[:7]
        settings = self.settings[file_no]
        offset, length = (int.from_bytes(header[i : i + 3], "little") for i in (1, 4))
        session = self._session
        if session is None:
            if n.FREE not in (settings.write, settings.read_write):
                raise Refused(n.AUTHENTICATION_ERROR)
            payload = data[7:]
        else:
            self._check_write_right(settings, session)
            payload = self._write_payload(session, settings, header, data[7:])
        if len(payload) != length:
            raise Refused(n.LENGTH_ERROR)
        self._store(file_no, offset, payload)
        if session is None:
            return _sw(n.OK)
        if _write_mode(settings) == n.PLAIN:
            session.step()  # a plain command in a session still counts
            return _sw(n.OK)
        return session.answer()

    def _check_write_right(self, settings: n.FileSettings, session: n.Session) -> None:
        granted = {settings.write, settings.read_write}
        if n.FREE not in granted and session.key_no not in granted:
            raise Refused(n.PERMISSION_DENIED)

    def _write_payload(
        self, session: n.Session, settings: n.FileSettings, header: bytes, body: bytes
    ) -> bytes:
        mode = _write_mode(settings)
        if mode == n.PLAIN:
            return body
        try:
            return session.open_command(n.WRITE_DATA, header, body, encrypted=mode == n.FULL)
        except n.SecureMessagingError:
            raise Refused(n.INTEGRITY_ERROR) from None

    _native: ClassVar[dict[int, Callable[[Ntag424, bytes], bytes]]] = {
        n.AUTH_FIRST: _auth_first,
        n.ADDITIONAL_FRAME: _auth_part2,
        n.CHANGE_KEY: _change_key,
        n.CHANGE_FILE_SETTINGS: _change_file_settings,
        n.WRITE_DATA: _write_data,
    }


def _write_mode(settings: n.FileSettings) -> int:
    free = n.FREE in (settings.write, settings.read_write)
    return n.FULL if free or settings.comm_mode == n.FULL else settings.comm_mode


def _sdm_fits(sdm: n.Sdm, size: int) -> bool:
    picc_end = sdm.picc_offset + 2 * sun.PICC_SIZE[sun.AES]
    mac_end = sdm.mac_offset + 2 * sun.MAC_SIZE
    return (
        picc_end <= sdm.mac_input_offset <= sdm.mac_offset
        and mac_end <= size
        and n.NO_ACCESS not in (sdm.meta_read, sdm.file_read)
    )


def _iso_data(command: bytes) -> bytes:
    if len(command) <= 5:
        return b""
    return bytes(command[5 : 5 + command[4]])


# -- ISO 14443-4 behind nfcpy's udp driver ----------------------------------------------------

# ATS: TL, T0 (FSCI 7: frames of 128 bytes, as the chip's; TA, TB, TC follow), TA (106 kbit/s
# only, all the udp driver speaks), TB (FWI 8: ~77 ms to answer, the chip's 7 doubled to leave a
# Python thread slack), TC (no CID, no NAD), the chip's one historical byte.
ATS = bytes.fromhex("0677008100" + "80")
_FSD = (16, 24, 32, 40, 48, 64, 96, 128, 256)
_SENS_RES, _SEL_RES = bytes.fromhex("4403"), bytes.fromhex("20")  # 7-byte UID, ISO-DEP


class IsoDep:
    """The PICC side of ISO 14443-4 (block numbers, chaining, retransmission) for one chip."""

    def __init__(self, chip: Ntag424, fsd: int) -> None:
        self.chip = chip
        self.fsd = fsd
        self.block = 1  # the PICC's block number starts at 1 (ISO 14443-4 rule D)
        self._chained = b""
        self._pending: list[bytes] = []
        self._last = b""

    def frame(self, data: bytes) -> bytes | None:
        """The answer to one frame from the PCD; None for what ends the activation."""
        pcb = data[0]
        if pcb & 0xE2 == 0x02:
            return self._i_block(pcb, bytes(data[1:]))
        if pcb & 0xE6 == 0xA2:
            return self._r_block(pcb)
        if pcb & 0xF7 == 0xC2:
            return bytes([pcb])  # S(DESELECT): acknowledge, and the activation ends after it
        return None

    def _i_block(self, pcb: int, inf: bytes) -> bytes:
        self.block = pcb & 1
        if pcb & 0x10:  # the PCD chains: acknowledge and wait for the rest
            self._chained += inf
            return self._send(bytes([0xA2 | self.block]))
        command, self._chained = self._chained + inf, b""
        response = self.chip.apdu(command)
        size = self.fsd - 3  # PCB and the two CRC bytes the frame also carries
        self._pending = [response[i : i + size] for i in range(0, len(response), size)]
        return self._next_chunk()

    def _r_block(self, pcb: int) -> bytes:
        number, nak = pcb & 1, bool(pcb & 0x10)
        if number == self.block:
            return self._last  # the PCD missed our last block: again (rule 11)
        if nak:
            return bytes([0xA2 | self.block])  # rule 12 (nfcpy's presence check)
        self.block = number
        return self._next_chunk()  # the PCD asks for the next chunk of a chained answer

    def _next_chunk(self) -> bytes:
        chunk = self._pending.pop(0) if self._pending else b""
        more = 0x10 if self._pending else 0x00
        return self._send(bytes([0x02 | more | self.block]) + chunk)

    def _send(self, frame: bytes) -> bytes:
        self._last = frame
        return frame


class UdpCard:
    """The chip in the field of ``udp:HOST:PORT``, on a thread: ``start``, then ``stop``.

    ``remove`` takes it out of the field mid-conversation: it hears nothing from then on,
    as a band pulled away from the reader, until ``place``. ``silent_after`` does the same
    after that many APDUs."""

    def __init__(self, chip: Ntag424, port: int, host: str = "localhost") -> None:
        self.chip = chip
        self.path = f"udp:{host}:{port}"
        self.silent_after: int | None = None
        self._present = threading.Event()
        self._present.set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ntag424", daemon=True)

    def start(self) -> UdpCard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def remove(self) -> None:
        self._present.clear()

    def place(self) -> None:
        self._present.set()

    def __enter__(self) -> UdpCard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        clf = nfc.ContactlessFrontend(self.path)
        try:
            while not self._stopping.is_set():
                if not self._present.wait(0.05):
                    continue  # out of the field: nothing to answer a poll with
                target = clf.listen(self._target(), 0.2)
                if target is not None and target.tt4_cmd:
                    self._serve(clf, bytes(target.tt4_cmd))
        finally:
            clf.close()

    def _target(self) -> Any:
        return nfc.clf.LocalTarget(
            "106A", sens_res=_SENS_RES, sdd_res=self.chip.uid, sel_res=_SEL_RES
        )

    def _serve(self, clf: Any, rats: bytes) -> None:
        """One activation: RATS, then blocks, until the reader lets go or the chip leaves."""
        if rats[0] != 0xE0 or not self._present.is_set():
            return
        layer = IsoDep(self.chip, _FSD[min(rats[1] >> 4, 8)])
        answer: bytes | None = ATS
        with contextlib.suppress(_FieldOff):
            while not self._stopping.is_set():
                command = self._exchange(clf, answer)
                answer = None if command is None else self._answer(layer, command)
                if command is not None and answer is None and self._present.is_set():
                    return  # a frame that ends the activation (HLTA, a new RATS, ...)

    def _answer(self, layer: IsoDep, command: bytes) -> bytes | None:
        if not self._present.is_set() or self._silenced():
            return None
        return layer.frame(command)

    def _silenced(self) -> bool:
        limit = self.silent_after
        if limit is not None and len(self.chip.commands) >= limit:
            self._present.clear()
            return True
        return False

    def _exchange(self, clf: Any, answer: bytes | None) -> bytes | None:
        """Send ``answer`` (if any), then the next frame; None if none came in a while.
        _FieldOff if the reader turned its field off or started over (a new poll)."""
        try:
            frame = clf.exchange(answer, 0.2)
        except nfc.clf.TimeoutError:
            return None
        except nfc.clf.CommunicationError:
            raise _FieldOff from None
        if frame is None or bytes(frame) in (b"\x26", b"\x52"):
            raise _FieldOff
        return bytes(frame)


class _FieldOff(Exception):
    """The reader's field went off (RFOFF), or it polls again: this activation is over."""


def main(argv: list[str] | None = None) -> int:
    """A factory-fresh chip on ``udp:localhost:PORT`` until Ctrl-C or SIGTERM, to try
    ``bandlink band enrol --device udp:localhost:PORT`` from another process."""
    parser = argparse.ArgumentParser(prog="python -m bandlink.tools.ntag424_emulator")
    parser.add_argument("port", type=int, help="the UDP port nfcpy's udp driver talks to")
    parser.add_argument("--uid", default="04E0101E0101E1", help="the chip's 7-byte UID, in hex")
    args = parser.parse_args(argv)
    card = UdpCard(Ntag424(bytes.fromhex(args.uid)), args.port).start()
    print(f"a factory-fresh NTAG 424 DNA on {card.path}", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    card.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
