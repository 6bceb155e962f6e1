# The band's SUN message (NTAG 424 DNA Secure Unique NFC), as the reader passes it on.
#
# Each read of a SUN band's NDEF file makes the chip mirror a fresh encrypted PICC block (UID and
# read counter), optionally encrypted file data, and a truncated CMAC into its URI as query
# parameters: ?picc_data=<hex>[&enc=<hex>]&cmac=<hex> ("e" is another name for picc_data). The
# reader cannot check them (the keys are the gateway's); it hex-decodes them for a Tap's picc,
# file and cmac. A URI without them (an NTAG21x band, a band without SUN), or with values that do
# not parse (odd length, wrong size, not hex), yields no SUN at all: the Tap carries the UID only
# and the gateway decides what a band without proof gets. Never an exception: the bytes come from
# whatever band a guest holds up.
#
# The NDEF message is the one short URI record an NTAG 424 DNA's SUN mirroring is set up in (its
# whole 256-byte file fits one): header, type length 1, payload length, "U", the URI prefix code
# (an abbreviated scheme, which does not matter here), the rest of the URI. Anything else, a
# fragment after the parameters included, is no SUN message.
#
# Heap: the gate reader has little to spare (docs/BENCHMARKS.md), so this is a module, not a
# class (a reader runs one role: one band at a time), with few names, and no allocation per tap
# but the values' views, which the role drops after the tap (views kept across the collection
# after a tap would pin pieces of the heap). The values are decoded in place in the NDEF buffer (a
# pair of hex digits becomes one byte, at or before where the pair started), so there is no
# second buffer; they stay valid until the next read, which pos.py relies on.
import feedback
from micropython import const

_NDEF_MAX = const(256)  # an NTAG 424 DNA's NDEF file, its 2-byte NLEN included
# The parameters, and for each the value it gives (0 picc, 1 file, 2 cmac) and its largest size.
_NAMES = const((b"picc_data=", b"e=", b"enc=", b"cmac="))
_VALUE = const(b"\x00\x00\x01\x02")
_MOST = const(b"\x18\x18\x30\x08")  # 24, 24, 48, 8

ndef = bytearray(_NDEF_MAX)  # the band's NDEF message, as the board read it


async def read(reader):
    """What a tap sends beyond its UID: the band's SUN values (parse), read right after wait_tag
    while the band is in the field. None (RETRY shown) when nothing can be sent now: the band
    left mid-read, or every gateway said it is offline (bl/1/$gw/+/state: ask for another tap
    at once, not after the deadline). Then nothing is recorded either: the band's unanswered
    operation, if it has one, stays as it was."""
    n = -1 if reader.gateway_online is False else await reader.board.read_ndef(ndef)
    if n < 0:
        reader.signal.show(feedback.RETRY, "Please tap again")
        return None
    return parse(n)


def parse(n):
    """The SUN values in the NDEF message of n bytes in ndef: [picc, file, cmac], views of ndef
    (file None without file data), or all None when it has none (a plain band, values that do
    not parse): the Tap then carries the UID alone."""
    buf = ndef
    got = [None, None, None]  # picc, file, cmac; False: present but unusable
    # SR set, no chunk, no ID, TNF 1 (well-known); type "U"; the payload inside n
    if n > 4 and buf[0] & 0x3F == 0x11 and buf[1] == 1 and buf[3] == 0x55 and buf[2] + 4 <= n:
        end = buf[2] + 4
        at = buf.find(b"?", 5, end)
        while 0 <= at < end:
            start = at + 1
            at = buf.find(b"&", start, end)
            _take(got, start, end if at < 0 else at)
    picc, file, cmac = got
    whole = file is None or (file and not len(file) % 16)  # file data is whole AES blocks
    if not (whole and picc and len(picc) in (16, 24) and cmac and len(cmac) == 8):
        got[0] = got[1] = got[2] = None
    return got


def _take(got, at, end):
    """The parameter in ndef[at:end], if it is one of _NAMES: its value decoded into got."""
    buf = ndef
    for k in range(len(_NAMES)):
        if buf.find(_NAMES[k], at, end) == at:
            at += len(_NAMES[k])
            n = end - at  # hex digits: two a byte, at most _MOST bytes
            got[_VALUE[k]] = False
            if not n or n & 1 or n > 2 * _MOST[k]:
                return
            for i in range(n):
                c = buf[at + i]
                if 0x30 <= c <= 0x39:
                    c -= 0x30
                elif 0x61 <= c | 0x20 <= 0x66:  # a..f, either case
                    c = (c | 0x20) - 0x57
                else:
                    return
                buf[at + i // 2] = buf[at + i // 2] << 4 | c if i & 1 else c
            got[_VALUE[k]] = memoryview(buf)[at : at + n // 2]
            return
