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
# Heap: readers have little to spare (docs/BENCHMARKS.md), so this is two functions with few
# names and no buffer of its own: the NDEF is read into the reader's transmit buffer (app.py,
# Reader.scratch), which is free until the Tap built from it is encoded. Each value is decoded by
# binascii into the bytes object the Tap keeps (its validator copies anything else into one), so
# a buffer for the values would save nothing; the values outlive the buffer (pos.py sends them
# again after a PIN). A tap allocates no more than that and a few views.
from binascii import unhexlify

import feedback
from micropython import const

# The parameters, and for each the value it gives (0 picc, 1 file, 2 cmac).
_NAMES = const((b"picc_data=", b"e=", b"enc=", b"cmac="))
_VALUE = const(b"\x00\x00\x01\x02")


async def read(reader):
    """What a tap sends (or journals) beyond its UID: the band's SUN values (parse), read right
    after wait_tag while the band is in the field. None (RETRY shown) when the band left
    mid-read: then nothing is recorded either, and the band's unanswered operation, if it has
    one, stays as it was."""
    buf = reader.scratch  # 320 bytes: an NTAG 424 DNA's whole NDEF file is 256
    n = await reader.board.read_ndef(buf)
    if n < 0:
        reader.signal.show(feedback.RETRY, "Please tap again")
        return None
    return parse(buf, n)


def parse(buf, n):
    """The SUN values in the NDEF message of n bytes in buf: [picc, file, cmac] as bytes (file
    None without file data), or all None when it has none (a plain band, values that do not
    parse): the Tap then carries the UID alone."""
    got: list = [None, None, None]
    # SR set, no chunk, no ID, TNF 1 (well-known); type "U"; the payload inside n
    if n > 4 and buf[0] & 0x3F == 0x11 and buf[1] == 1 and buf[3] == 0x55 and buf[2] + 4 <= n:
        view = memoryview(buf)
        end = buf[2] + 4
        at = buf.find(b"?", 5, end)
        while 0 <= at < end:  # at: the "?" or "&" before a parameter
            start = at + 1
            at = buf.find(b"&", start, end)
            stop = end if at < 0 else at
            for k in range(len(_NAMES)):
                if buf.find(_NAMES[k], start, stop) == start:
                    try:  # either case; odd, empty or not hex is no value, and so no SUN
                        # The stubs want bytes; MicroPython's binascii takes any buffer.
                        value = view[start + len(_NAMES[k]) : stop]
                        got[_VALUE[k]] = unhexlify(value)  # type: ignore[arg-type]
                    except ValueError:
                        got[_VALUE[k]] = b""
    picc, file, cmac = got
    if (
        picc is None
        or len(picc) not in (16, 24)  # AES mode, LRP mode
        or cmac is None
        or len(cmac) != 8
        or (file is not None and len(file) not in (16, 32, 48))  # whole AES blocks
    ):
        got[0] = got[1] = got[2] = None
    return got
