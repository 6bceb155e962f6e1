"""``bandlink band enrol``: personalise a factory-fresh NTAG 424 DNA on a USB reader (nfcpy)
and link it to a guest.

On the chip, in one activation, as AN12196's personalisation example does: select the NDEF
application; AuthenticateEV2First with key 0, the factory key (a band that refuses it is not
factory-fresh); write the NDEF file with the band's URL, its SUN values zeros;
ChangeFileSettings so the chip mirrors the encrypted UID and read counter and the CMAC into
that URL on every read (SDM, meta read key 1, file read key 2, the CMAC over nothing but its
session key: the MAC input offset is the MAC's own); ChangeKey 1 and 2, then 0, to the keys
diversified from the venue's master (gateway/core/bands/keys.py), key 0 last because changing
it ends the session. Then the URL is read once more as a phone reads it and verified as the
gateway will; only a band that verifies is issued to the guest in the store.

Everything that can be checked without touching the band (the guest, the URL) is checked
before the band is touched; a band already in the store is refused before anything is written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nfc  # type: ignore[import-untyped]
import nfc.clf  # type: ignore[import-untyped]
import nfc.tag  # type: ignore[import-untyped]
import nfc.tag.tt4  # type: ignore[import-untyped]

from bandlink.gateway.core.bands import sun
from bandlink.gateway.core.bands.keys import APP_MASTER, SDM_FILE_READ, SDM_META_READ, BandKeys
from bandlink.gateway.store import AuditEntry, Store

from . import ntag424 as n
from .sunband import uri_record

DEFAULT_URL = "https://bandlink.example/b"
KEY_VERSION = 1  # the version every key a band is personalised with carries
NDEF_FILE_SIZE = 256  # NTAG 424 DNA's file 02
CONNECT_S = 3.0  # how long to wait for a band on the reader
_PICC, _MAC = "picc_data=", "cmac="
_RECORD_TEXT = 2 + 5  # NLEN, then the URI record's header, type, length, "U", prefix code


class EnrolError(Exception):
    """Enrolment failed; ``str()`` says why, in one line for the operator."""


class BandLost(EnrolError):
    """The band stopped answering (it left the field, or the reader failed)."""


class NotFactoryFresh(EnrolError):
    """The band's key 0 is not the factory key."""


@dataclass(frozen=True)
class Enrolled:
    uid: bytes
    guest: str
    counter: int
    url: str

    def json_line(self) -> str:
        fields = {"uid": self.uid.hex().upper(), "guest": self.guest, "counter": self.counter}
        return json.dumps(fields | {"url": self.url})


# -- what is written ----------------------------------------------------------------------------


def template_url(base: str) -> str:
    """The band's URL with its SUN values zeros, which the chip overwrites on every read.
    ValueError for a base that is not ``https://host/path`` without query or fragment."""
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"--url must look like https://host/path, not {base!r}")
    return f"{base}?{_PICC}{'0' * 32}&{_MAC}{'0' * 16}"


def ndef_file(url: str) -> bytes:
    """The NDEF file: its length (NLEN, 2 bytes), then one URI record. ValueError if it does
    not fit the band's."""
    record = uri_record(url)
    content = len(record).to_bytes(2, "big") + record
    if len(content) > NDEF_FILE_SIZE:
        raise ValueError(f"the URL does not fit the band's {NDEF_FILE_SIZE}-byte NDEF file")
    return content


def sdm_settings(url: str) -> n.FileSettings:
    """File 02 as a band's: read free, write and change with key 0, SDM mirroring the PICC
    data (key 1) and a CMAC (key 2) over an empty input at the offsets of their values."""
    text = url[len("https://") :]
    # The last ones: the template appends them, whatever the path holds.
    picc = _RECORD_TEXT + text.rindex(_PICC) + len(_PICC)
    mac = _RECORD_TEXT + text.rindex("&" + _MAC) + 1 + len(_MAC)
    sdm = n.Sdm(SDM_META_READ, SDM_FILE_READ, picc, mac_input_offset=mac, mac_offset=mac)
    return n.FileSettings(n.PLAIN, read=n.FREE, write=0, read_write=0, change=0, sdm=sdm)


# -- the link to the band -----------------------------------------------------------------------


class Link:
    """APDUs to the band through nfcpy's Type 4 tag (ISO-DEP), with their status words."""

    def __init__(self, tag: Any) -> None:
        self._tag = tag

    def send(self, apdu: bytes, what: str) -> tuple[bytes, int]:
        try:
            response = self._tag.transceive(bytearray(apdu))
        except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as err:
            raise BandLost(f"the band stopped answering at {what} ({err})") from None
        if response is None or len(response) < 2:
            raise BandLost(f"the band stopped answering at {what}")
        return n.split_response(bytes(response))

    def expect(self, apdu: bytes, ok: int, what: str) -> bytes:
        data, status = self.send(apdu, what)
        if status != ok:
            raise EnrolError(f"the band refused {what}: {n.status_name(status)}")
        return data


@contextmanager
def band_on_reader(device: str, wait_s: float = CONNECT_S) -> Iterator[tuple[bytes, Link]]:
    """(UID, link) of the Type 4A tag on the reader at ``device``, held for the block."""
    try:
        clf = nfc.ContactlessFrontend(device)
    except (OSError, ValueError) as err:
        raise EnrolError(f"no NFC reader at {device!r} ({err})") from None
    try:
        tag = _connect(clf, wait_s)
        yield bytes(tag.identifier), Link(tag)
    finally:
        clf.close()


def _connect(clf: Any, wait_s: float) -> Any:
    deadline = time.monotonic() + wait_s
    options = {"targets": ["106A"], "on-connect": lambda tag: False, "iterations": 1}
    tag = clf.connect(rdwr=options, terminate=lambda: time.monotonic() > deadline)
    if not tag:
        raise EnrolError(f"no band on the reader (waited {wait_s:g} s)")
    if not isinstance(tag, nfc.tag.tt4.Type4Tag):
        raise EnrolError(f"not an NTAG 424 DNA: {tag}")
    return tag


# -- the steps ----------------------------------------------------------------------------------


def authenticate(link: Link, key_no: int, key: bytes) -> n.Session:
    """AuthenticateEV2First; EnrolError if the band does not hold ``key`` as key ``key_no``."""
    encrypted_rnd_b = link.expect(n.auth_first(key_no), n.MORE, "AuthenticateEV2First")
    rnd_a = n.random_bytes(16)
    answer, rnd_b = n.auth_answer(key, encrypted_rnd_b, rnd_a)
    data, status = link.send(answer, "AuthenticateEV2First")
    if status == n.AUTHENTICATION_ERROR:
        raise NotFactoryFresh(f"the band's key {key_no} is not the factory key")
    if status != n.OK or len(data) != 32:
        raise EnrolError(f"the band refused AuthenticateEV2First: {n.status_name(status)}")
    try:
        return n.auth_result(key, rnd_a, rnd_b, data)
    except n.SecureMessagingError as err:
        raise EnrolError(f"the band's authentication does not verify: {err}") from None


@dataclass
class Channel:
    """The link and the session it runs: CommMode.Full commands, their MACed answers checked."""

    link: Link
    session: n.Session

    def full(self, ins: int, header: bytes, data: bytes, what: str) -> None:
        body = self.link.expect(self.session.full_command(ins, header, data), n.OK, what)
        try:
            self.session.check_answer(body)
        except n.SecureMessagingError as err:
            raise EnrolError(f"the band's answer to {what} does not verify: {err}") from None


def personalise(channel: Channel, keys: BandKeys, uid: bytes, url: str) -> None:
    content = ndef_file(url)
    header = n.write_data_header(n.NDEF_FILE, 0, len(content))
    channel.full(n.WRITE_DATA, header, content, "WriteData (the NDEF file)")
    settings = sdm_settings(url).encode()
    channel.full(n.CHANGE_FILE_SETTINGS, bytes([n.NDEF_FILE]), settings, "ChangeFileSettings")
    for key_no, key in ((SDM_META_READ, keys.meta_read), (SDM_FILE_READ, keys.file_read(uid))):
        data = n.change_key_data(key_no, key, KEY_VERSION, old=n.FACTORY_KEY)
        channel.full(n.CHANGE_KEY, bytes([key_no]), data, f"ChangeKey {key_no}")
    # Key 0 last: it is the session's key, so the chip ends the session and answers unMACed.
    data = n.change_key_data(APP_MASTER, keys.band_key(APP_MASTER, uid), KEY_VERSION, old=None)
    command = channel.session.full_command(n.CHANGE_KEY, bytes([APP_MASTER]), data)
    channel.link.expect(command, n.OK, "ChangeKey 0")


def read_url(link: Link) -> str:
    """The URL on the band, read as a phone reads it: the NDEF application, the NDEF file,
    one ISOReadBinary of it (which is one read for the band's SUN counter)."""
    link.expect(n.select_application(), n.ISO_OK, "selecting the NDEF application")
    link.expect(n.select_file(n.FILE_IDS[n.NDEF_FILE]), n.ISO_OK, "selecting the NDEF file")
    content = link.expect(n.read_binary(), n.ISO_OK, "ISOReadBinary")
    length = int.from_bytes(content[:2], "big")
    record = content[2 : 2 + length]
    if len(record) < 5 or record[:2] != b"\xd1\x01" or record[3:5] != b"U\x04":
        raise EnrolError("the band's NDEF file is not one https URI record")
    return "https://" + record[5 : 4 + record[2]].decode("utf-8", "replace")


def verify(url: str, keys: BandKeys, uid: bytes) -> sun.SunReading:
    """The band's URL verified as the gateway verifies a tap; EnrolError if it does not."""
    try:
        parsed = sun.parse_url(url)
        if parsed.picc is None:
            raise ValueError("no picc_data= in the URL")
        reading = sun.verify(keys.meta_read, keys.file_read, parsed.picc, parsed.mac)
    except ValueError as err:  # SunError is one
        raise EnrolError(f"its URL does not verify ({err}): {url}") from None
    if reading.uid != uid:
        raise EnrolError(f"its URL names UID {reading.uid.hex().upper()}, not its own")
    return reading


def enrol(device: str, guest: str, store: Store, master: bytes, base_url: str) -> Enrolled:
    url = template_url(base_url)
    ndef_file(url)  # a URL too long for one record fails here, before the band is touched
    if store.guest_name(guest) is None:
        raise EnrolError(f"no guest {guest!r} in the store")
    keys = BandKeys(master)
    with band_on_reader(device) as (uid, link):
        if store.band(uid) is not None:
            raise EnrolError(f"band {uid.hex().upper()} is issued already")
        link.expect(n.select_application(), n.ISO_OK, "selecting the NDEF application")
        try:
            session = authenticate(link, APP_MASTER, n.FACTORY_KEY)
        except NotFactoryFresh as err:
            raise NotFactoryFresh(f"{err}: {_whose(link, keys, uid)}") from None
        personalise(Channel(link, session), keys, uid, url)
        written = read_url(link)
    # From here on the band carries the venue's keys: say so, whatever goes wrong.
    try:
        reading = verify(written, keys, uid)
        entry = AuditEntry(
            at_ms=time.time_ns() // 1_000_000,
            actor="cli",
            role="desk",
            action="band enrol",
            status=0,
            target=uid.hex(),
            detail=json.dumps({"guest": guest, "device": device}),
        )
        store.issue_band(uid, guest, entry=entry)
    except (EnrolError, ValueError) as err:
        raise EnrolError(f"the band is personalised, but {err}; it is not issued") from None
    return Enrolled(uid, guest, reading.counter, written)


def _whose(link: Link, keys: BandKeys, uid: bytes) -> str:
    """Why a band is not factory-fresh, as far as its URL tells: a band this venue's keys
    personalised whose enrolment stopped before the store, or someone else's."""
    try:
        verify(read_url(link), keys, uid)
    except EnrolError:
        return "it is not factory-fresh (personalised for something else?)"
    return "it carries this venue's keys already (an enrolment that stopped before the store?)"


def read_band_url(device: str, wait_s: float = CONNECT_S) -> str:
    """One read of the band on the reader, as a phone would make it (tests, operators). A poll
    that raced the band's last answer costs a second: one retry."""
    for attempt in (1, 2):
        try:
            with band_on_reader(device, wait_s) as (_uid, link):
                return read_url(link)
        except BandLost:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# -- the command ------------------------------------------------------------------------------

# Enrolment never connects to a broker, but the gateway's settings insist on one.
_NO_BROKER = "mqtt://localhost"


def run_enrol(device: str, guest: str, *, db: str | None, url: str | None) -> int:
    """``bandlink band enrol``: 0 and a JSON line, or one line on stderr and 1 (2: usage)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bandlink.gateway.settings import SettingsError, load_settings

    # nfcpy logs every retry it makes; the operator wants the outcome, in one line.
    logging.getLogger("nfc").setLevel(logging.CRITICAL)
    try:
        settings = load_settings(db=db, broker=_NO_BROKER)
    except SettingsError as err:
        return _fail("; ".join(err.problems), 2)
    try:
        ndef_file(template_url(url or DEFAULT_URL))
    except ValueError as err:
        return _fail(str(err), 2)
    store = Store(settings.db)
    try:
        enrolled = enrol(device, guest, store, settings.band_master, url or DEFAULT_URL)
    except (EnrolError, ValueError) as err:
        return _fail(str(err), 1)
    except SQLAlchemyError as err:
        # The driver's own words, not SQLAlchemy's statement dump (one line for the operator).
        cause = getattr(err, "orig", None) or err
        return _fail(f"the store at {store.url} failed: {cause}", 1)
    finally:
        store.close()
    print(enrolled.json_line(), flush=True)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"bandlink band enrol: {message}", file=sys.stderr)
    return status
