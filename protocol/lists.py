# The band list a reader decides from when offline (SPEC, "The band list"): fixed-size
# entries, sorted by band, carried in Command LIST_SNAPSHOT / LIST_DELTA chunks.
#
#   byte    0       1..10             11      12..13      14..15
#           uid     uid, zero-padded  flags   PIN check   PIN salt
#           length  to 10 bytes
#
# The reader stores the entries as they come and searches them by their first 11 bytes; the
# gateway builds them. Not imported by the reader's roles: it carries what it receives.
from .messages import LIST_ENTRY_SIZE

ENTRY = 1  # a ticket valid today at the reader's site: a gate may let the band in
PAY = 2  # a till may take an offline sale from the band
PIN = 4  # an offline till asks for the PIN for every sale (checked against the entry)
KEY_SIZE = 11  # what the list is sorted and searched by: the uid's length, then the uid
_UID_MAX = 10


def entry(
    uid: bytes, flags: int, pin_check: bytes = b"\x00\x00", pin_salt: bytes = b"\x00\x00"
) -> bytes:
    """One list entry for a band (SPEC, "The band list"; the check is "Offline PIN check")."""
    if not 4 <= len(uid) <= _UID_MAX or not 0 <= flags < 256:
        raise ValueError("a list entry needs a 4..10-byte uid and a flags byte")
    if len(pin_check) != 2 or len(pin_salt) != 2:
        raise ValueError("a list entry's PIN check and salt are 2 bytes each")
    padded = bytes(uid) + bytes(_UID_MAX - len(uid))
    out = bytes((len(uid),)) + padded + bytes((flags,)) + bytes(pin_check) + bytes(pin_salt)
    assert len(out) == LIST_ENTRY_SIZE
    return out


def key(uid: bytes) -> bytes:
    """A band's place in the list: entries are sorted by this, byte by byte."""
    return bytes((len(uid),)) + bytes(uid) + bytes(_UID_MAX - len(uid))


def entry_uid(entry_bytes: bytes) -> bytes:
    return bytes(entry_bytes[1 : 1 + entry_bytes[0]])
