# The SUN values from a band's NDEF URI record: the URL shapes an NTAG 424 DNA mirrors (AES and
# LRP vectors of a third party), and what is not one (no query, bad hex, wrong sizes, records
# that are not one short URI record) giving no SUN, never an exception.
import gc

import mptest
import sun

H = bytes.fromhex
AES_PICC = "EF963FF7828658A599F3041510671E88"
ENC = "94592FDE69FA06E8E3B6CA686A22842B"
LRP_PICC = "07D9CA2545881D4BFDD920BE1603268C0714420DD893A497"
WITH_FILE = "sdm.example.com/tag?picc_data=%s&enc=%s&cmac=C48B89C17A233B2C" % (AES_PICC, ENC)
GOOD = "e.io/?picc_data=%s&cmac=94EED9EE65337086" % AES_PICC


def uri_record(url, prefix=4, head=0xD1):
    """One short NDEF record, type "U": header, type length, payload length, "U", prefix."""
    return bytes((head, 1, len(url) + 1, 0x55, prefix)) + url.encode()


BUF = bytearray(320)  # as Reader.scratch


def parse(ndef):
    """Parse ndef as read from a band: whether it had SUN, and (picc, file, cmac) as bytes."""
    BUF[: len(ndef)] = ndef
    got = sun.parse(BUF, len(ndef))
    return got[0] is not None, tuple(None if v is None else bytes(v) for v in got)


def test_aes_with_and_without_file_data():
    assert parse(uri_record(WITH_FILE)) == (True, (H(AES_PICC), H(ENC), H("C48B89C17A233B2C")))
    url = "sdm.example.com/?picc_data=%s&cmac=94EED9EE65337086" % AES_PICC
    assert parse(uri_record(url)) == (True, (H(AES_PICC), None, H("94EED9EE65337086")))


def test_lrp_lowercase_e_and_any_order():
    url = "x.io/?cmac=f9481ac7d855bdb6&uid=1&e=%s&enc=%s" % (LRP_PICC.lower(), ENC.lower() * 3)
    assert parse(uri_record(url, prefix=0)) == (
        True,
        (H(LRP_PICC), H(ENC * 3), H("F9481AC7D855BDB6")),
    )


def test_what_is_no_sun_message():
    text = bytes((0x91, 1, 3, 0x54, 2)) + b"en"  # a text record
    for ndef in (
        uri_record("shop.example.com/band/42"),  # an NTAG21x band's plain URL
        uri_record("e.io/?picc_data=%s" % AES_PICC),  # no cmac
        uri_record("e.io/?cmac=94EED9EE65337086"),  # no picc
        uri_record(GOOD[:-1]),  # odd cmac
        uri_record(GOOD + "0"),  # cmac too long
        uri_record(GOOD.replace("EF", "EG")),  # not hex
        uri_record(GOOD.replace("EF", "E\x10")),  # not hex either ("0" with bit 5 cleared)
        uri_record(GOOD.replace(AES_PICC, AES_PICC[:30])),  # 15 bytes
        uri_record(GOOD.replace(AES_PICC, AES_PICC + "00")),  # 17 bytes
        uri_record(GOOD.replace(AES_PICC, AES_PICC * 2)),  # 32 bytes
        uri_record(GOOD + "&enc=" + ENC[:16]),  # 8 bytes of file data
        uri_record(GOOD + "&enc=" + ENC + "00"),  # 17
        uri_record(GOOD + "&enc="),
        uri_record(GOOD + "#top"),  # a fragment: cmac is not hex
        uri_record(GOOD, head=0xD4),  # TNF 4 (external), not a URI
        uri_record(GOOD, head=0xF1),  # a chunk
        uri_record(GOOD, head=0xD9),  # an ID length follows: not an NTAG 424 DNA's record
        uri_record(GOOD)[:-3],  # the record is longer than the message
        text + uri_record(GOOD),  # the URI is not the first record
        b"\xd1\x01",
        b"",
    ):
        assert parse(ndef) == (False, (None, None, None)), ndef


def test_a_failed_parse_forgets_the_last_tap():
    assert parse(uri_record(GOOD))[0]
    assert parse(uri_record("shop.example.com/band/42")) == (False, (None, None, None))


def test_a_tap_allocates_only_its_views():
    ndef = uri_record(WITH_FILE)
    assert len(ndef) < len(BUF)

    def per_tap(parse):
        gc.collect()
        before = gc.mem_alloc()
        for _ in range(20):
            BUF[: len(ndef)] = ndef  # decoded in place: the URL again for each parse
            if parse:
                sun.parse(BUF, len(ndef))
        return (gc.mem_alloc() - before) // 20

    # 384 B on this 64-bit port: the three values' bytes objects (which the Tap keeps as they
    # are), a view of each value's hex, a view of the buffer and the list. A copy of the URL per
    # tap breaks this.
    assert per_tap(True) - per_tap(False) <= 384, per_tap(True) - per_tap(False)


mptest.main(globals())
